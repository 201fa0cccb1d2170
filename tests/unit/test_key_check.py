"""`cdc check` on key_columns against what PostgreSQL logs of a deleted row."""

from __future__ import annotations

from cdc.findings import Severity
from cdc.key_check import key_findings
from cdc.tables.config import parse_watched_tables
from cdc.tables.live import LiveTable

WATCHED = parse_watched_tables("tables:\n  public.moves: {key_columns: [account_id]}\n")
COLUMNS = frozenset({"id", "account_id", "amount"})


def findings(identity: str, **live: frozenset[str]) -> list[tuple[Severity, str]]:
    table = LiveTable(identity, frozenset({"id"}), live.pop("columns", COLUMNS), **live)
    return [(f.severity, f.problem) for f in key_findings(WATCHED, {"public.moves": table}, "f")]


def test_the_key_must_be_in_the_old_row() -> None:
    (default,) = findings("d")
    assert default[0] is Severity.WARNING
    assert "REPLICA IDENTITY DEFAULT: a delete arrives keyed by NULL" in default[1]
    assert findings("f") == []
    assert findings("i", identity_index=frozenset({"account_id"})) == []
    (index,) = findings("i", identity_index=frozenset({"id"}))
    assert "REPLICA IDENTITY INDEX" in index[1]


def test_an_unknown_key_column_is_an_error() -> None:
    assert findings("f", columns=frozenset({"id"})) == [
        (Severity.ERROR, "key_columns account_id: no such column in public.moves")
    ]

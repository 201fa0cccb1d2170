"""Column values marked sensitive in the watched-tables file (``sensitive_columns``), masked
wherever cdc shows a record to a person: a dead letter's key, payload and reason in the
console, and what the console logs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cdc.events import Change
from cdc.settings import MASK
from cdc.tables.config import WatchedTables

# A value this short is left alone in free text (a reason): masking "1" in every "attempt 1"
# would hide the text and protect nothing.
_SHORTEST_IN_TEXT = 4
_LARGEST_SHOWN = 64 * 1024


@dataclass(frozen=True)
class Shown:
    """A record as a person may see it: ``text`` with the sensitive values masked, and
    those values, to mask them in the text around it (`Masking.text`)."""

    text: str
    hidden: frozenset[str] = frozenset()


class Masking:
    """The sensitive columns of each watched table."""

    def __init__(self, watched: WatchedTables) -> None:
        self._columns = {name: watched.sensitive_columns(name) for name in watched.tables}

    def columns(self, table: str) -> frozenset[str]:
        return self._columns.get(table, frozenset())

    def row(self, table: str, row: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """``row`` with its sensitive columns' values masked (None stays None)."""
        if row is None:
            return None
        columns = self.columns(table)
        return {k: MASK if k in columns and v is not None else v for k, v in row.items()}

    def data(self, table: str, data: Any) -> tuple[Any, frozenset[str]]:
        """Any JSON-like ``data`` (a record as it was read) with every value under a key
        named as a sensitive column masked, at any depth; and the values masked."""
        columns = self.columns(table)
        hidden: set[str] = set()

        def walk(node: Any) -> Any:
            if isinstance(node, Mapping):
                out = {}
                for k, v in node.items():
                    if k in columns and v is not None and not isinstance(v, Mapping | list):
                        hidden.add(str(v))
                        out[k] = MASK
                    else:
                        out[k] = walk(v)
                return out
            if isinstance(node, list):
                return [walk(v) for v in node]
            return node

        return (walk(data) if columns else data), frozenset(hidden)

    def bytes_(self, table: str, raw: bytes | None, indent: int | None = 2) -> Shown:
        """Raw record bytes as text: JSON with the sensitive values masked; anything else
        as text only when the table has no sensitive column (it cannot be masked)."""
        if raw is None:
            return Shown("null")
        try:
            data = json.loads(raw)
        except ValueError:
            if self.columns(table):
                return Shown(
                    f"({len(raw)} bytes not shown: not JSON, and {table} has sensitive columns)"
                )
            return Shown(raw[:_LARGEST_SHOWN].decode(errors="replace"))
        masked, hidden = self.data(table, data)
        return Shown(pretty(masked, indent), hidden)

    @staticmethod
    def text(text: str, hidden: Iterable[str]) -> str:
        """Free text (a reason, an error) with the ``hidden`` values masked where they occur."""
        for value in sorted(hidden, key=len, reverse=True):
            if len(value) >= _SHORTEST_IN_TEXT:
                text = text.replace(value, MASK)
        return text


def masked_reason(change: Change, columns: frozenset[str], reason: str) -> str:
    """``reason`` (an exception's text may quote the row) with the values ``change``'s rows
    hold in ``columns`` masked."""
    hidden = set()
    for row in (change.before, change.after):
        for column in columns & set(row or ()):
            try:
                value = row[column]  # type: ignore[index]
            except Exception:  # noqa: S112 - a value that does not decode shows nowhere
                continue
            if value is not None:
                hidden.add(str(value))
    return Masking.text(reason, hidden)


def pretty(data: Any, indent: int | None = 2) -> str:
    """JSON for a person: ``indent`` None puts it on one line."""
    text = json.dumps(data, indent=indent, default=str, ensure_ascii=False)
    return text if len(text) <= _LARGEST_SHOWN else text[:_LARGEST_SHOWN] + "\n..."

"""`key_columns` on the real stack: a table keyed by a business column (`account_id`) rather
than its primary key. Every change, the deletes included, is keyed and partitioned by the
account, and each account's changes reach the handler in commit order, spread over four
partitions, in every encoding; `cdc check` warns while the account is not in the old row
PostgreSQL logs."""

from __future__ import annotations

import threading

import pytest

from cdc import Change, Context, Op, on_change
from cdc.check import run_check
from cdc.findings import Finding, Severity
from cdc.routing import Router, handlers_of
from cdc.testing import RunningConsumer
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack

ACCOUNTS = 6
ROUNDS = 5


def key_findings(p: Pipeline) -> list[Finding]:
    return [
        f for f in run_check([], p.watched(), p.settings).findings if "key_columns" in f.problem
    ]


@pytest.mark.parametrize("encoding", ["json", "json-noschema", "avro"])
def test_changes_are_keyed_and_ordered_by_the_key_columns(
    pipeline: Pipeline, encoding: str
) -> None:
    p = pipeline
    moves = p.table("moves")
    p.sql(
        f"CREATE TABLE {moves} (id serial PRIMARY KEY, account_id int NOT NULL, "
        "seq int NOT NULL, amount int)"
    )
    p.write_file({moves: {"key_columns": ["account_id"]}}, topic_partitions=4, encoding=encoding)
    p.apply()
    warned = key_findings(p)
    assert [(f.severity, "keyed by NULL" in f.problem) for f in warned] == [
        (Severity.WARNING, True)
    ]
    assert "replica_identity: full" in warned[0].fix

    p.write_file(
        {moves: {"key_columns": ["account_id"], "replica_identity": "full"}},
        topic_partitions=4,
        encoding=encoding,
    )
    p.apply()
    assert key_findings(p) == []

    seen: dict[int, list[tuple[str, int, int]]] = {}  # account: (op, seq, partition)
    lock = threading.Lock()

    @on_change(f"public.{moves}", ops="cud")
    def record(change: Change, ctx: Context) -> None:
        row = change.row
        assert row is not None
        assert change.key == {"account_id": row["account_id"]}
        with lock:
            seen.setdefault(row["account_id"], []).append(
                (change.op.value, row["seq"], change.kafka.partition)
            )

    settings = p.stack.settings(watched_tables=p.file, group_id=p.id, http_port=None)
    watched = p.watched()
    with RunningConsumer(settings, watched, Router(handlers_of(record), watched.tables)) as c:
        # Interleaved writes: each account's rows get seq 1, 2, ... in commit order.
        for seq in range(1, ROUNDS + 1):
            for account in range(ACCOUNTS):
                p.sql(
                    f"INSERT INTO {moves} (account_id, seq, amount) VALUES (%s, %s, %s)",
                    (account, seq, seq * 10),
                )
        for account in range(ACCOUNTS):
            p.sql(
                f"UPDATE {moves} SET seq = %s WHERE account_id = %s AND seq = 1",
                (ROUNDS + 1, account),
            )
            p.sql(f"DELETE FROM {moves} WHERE account_id = %s AND seq = 2", (account,))
        total = ACCOUNTS * (ROUNDS + 2)
        c.wait_until(
            lambda _: sum(len(v) for v in seen.values()) >= total, "every change", timeout=120
        )
    assert set(seen) == set(range(ACCOUNTS))
    for account, changes in seen.items():
        assert len({partition for *_, partition in changes}) == 1, account
        assert [(op, seq) for op, seq, _ in changes] == [
            *(("c", s) for s in range(1, ROUNDS + 1)),
            ("u", ROUNDS + 1),
            ("d", 2),
        ], account
    assert len({changes[0][2] for changes in seen.values()}) > 1  # spread over partitions
    assert Op.DELETE.value in {op for changes in seen.values() for op, *_ in changes}

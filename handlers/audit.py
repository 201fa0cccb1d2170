"""An audit trail: every change to users and posts, with the old and the new row, written
in bulk: a batch handler gets up to 500 changes at a time and writes them in one statement,
in a workload of its own (`bulk` in cdc.yaml), so its writes never hold up the other handlers."""

import json
from functools import partial

from psycopg.types.json import Jsonb

from cdc import Change, Context, on_change

_dumps = partial(json.dumps, default=str)


@on_change("users", batch=500, max_wait_s=0.5, reads_before=True, workload="bulk")
@on_change("posts", batch=500, max_wait_s=0.5, reads_before=True, workload="bulk")
def audit(changes: list[Change], ctx: Context) -> None:
    with ctx.connection() as conn, conn.cursor() as cur:
        # A change delivered again (a restart, a rebalance) finds its row: one row per change.
        cur.executemany(
            "INSERT INTO audit_log (change_key, table_name, op, row_key, changed, before, after,"
            " committed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (change_key) DO NOTHING",
            [_row(change) for change in changes],
        )


def _row(change: Change) -> tuple[object, ...]:
    changed = change.changed_columns()
    return (
        change.idempotency_key,
        change.table,
        change.op.value,
        Jsonb(change.key, dumps=_dumps),
        sorted(changed) if changed is not None else None,
        Jsonb(change.before.to_dict(), dumps=_dumps) if change.before is not None else None,
        Jsonb(change.after.to_dict(), dumps=_dumps) if change.after is not None else None,
        change.source.commit_time,
    )

"""An audit trail: every change to users and posts, with the old and the new row."""

import json
from functools import partial

from psycopg.types.json import Jsonb

from cdc import Change, Context, on_change

_dumps = partial(json.dumps, default=str)


@on_change("users")
@on_change("posts")
def audit(change: Change, ctx: Context) -> None:
    changed = change.changed_columns()
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO audit_log (change_key, table_name, op, row_key, changed, before, after,"
            " committed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (change_key) DO NOTHING",
            (
                change.idempotency_key,
                change.table,
                change.op.value,
                Jsonb(change.key, dumps=_dumps),
                sorted(changed) if changed is not None else None,
                Jsonb(change.before.to_dict(), dumps=_dumps) if change.before is not None else None,
                Jsonb(change.after.to_dict(), dumps=_dumps) if change.after is not None else None,
                change.source.commit_time,
            ),
        )

"""A few writes to the example schema, then what the handlers made of them.

`make run` starts this beside the consumer: ``python -m handlers.demo``. Safe to run again
(each run makes a new user)."""

import secrets
import sys
import time
from typing import Any

import psycopg

from cdc import emit
from cdc.settings import load_settings
from cdc.tables.config import load_watched_tables
from handlers.models import PostSubmitted


def main(timeout: float = 120.0) -> int:
    settings = load_settings()
    watched = load_watched_tables(settings.watched_tables)
    assert watched.outbox is not None, "cdc.yaml declares the outbox"
    outbox = watched.outbox.table
    handle = f"grace_{secrets.token_hex(2)}"
    with psycopg.connect(
        settings.pg_conninfo(), password=settings.pg_password.get_secret_value(), autocommit=True
    ) as db:

        def run(sql: str, *params: Any) -> Any:
            print(f"demo> {sql % tuple(repr(p) for p in params)}", flush=True)
            cur = db.execute(sql.encode(), params)
            return cur.fetchone()[0] if cur.description else None  # type: ignore[index]

        time.sleep(3)  # let the consumer's start-up lines go first
        grace = run(
            "INSERT INTO users (handle, email) VALUES (%s, %s) RETURNING id",
            handle,
            f"{handle}@example.org",
        )
        run("UPDATE users SET email = %s WHERE id = %s", f"{handle}@navy.mil", grace)
        # The post and its domain event commit together (the workflow in handlers.moderation).
        with db.transaction():
            post = run(
                "INSERT INTO posts (author_id, title) VALUES (%s, %s) RETURNING id", grace, "COBOL"
            )
            submitted = PostSubmitted(post_id=post, author_id=grace, title="COBOL")
            print(f"demo> emit(conn, 'post', {post}, 'post-submitted', {submitted!r})", flush=True)
            emit(db, "post", post, "post-submitted", submitted, table=outbox)
        ada = run("SELECT id FROM users WHERE handle = %s", "ada")
        run("INSERT INTO comments (post_id, author_id, body) VALUES (%s, %s, %s)", post, ada, "Hi")
        run("INSERT INTO votes (post_id, voter_id, value) VALUES (%s, %s, 1)", post, ada)

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kinds = {
                r[0]
                for r in db.execute("SELECT kind FROM notifications WHERE user_id = %s", (grace,))
            }
            scored = db.execute("SELECT 1 FROM post_stats WHERE post_id = %s", (post,)).fetchone()
            if kinds >= {"welcome", "email_changed", "comment", "published"} and scored:
                break
            time.sleep(1)
        else:
            print("demo> the handlers have not caught up yet; see the consumer's log", flush=True)
            return 1
        print(f"demo> what the handlers wrote for {handle}:", flush=True)
        for label, sql in (
            ("notifications", "SELECT kind, message FROM notifications WHERE user_id = %s"),
            ("user_stats", "SELECT posts FROM user_stats WHERE user_id = %s"),
            (
                "post_reviews",
                "SELECT r.verdict, r.published_at IS NOT NULL FROM post_reviews r "
                "JOIN posts p ON p.id = r.post_id WHERE p.author_id = %s",
            ),
            (
                "audit_log",
                "SELECT op, changed FROM audit_log WHERE row_key->>'id' = %s::text "
                "AND table_name = 'public.users' ORDER BY committed_at",
            ),
        ):
            for row in db.execute(sql.encode(), (grace,)):
                print(f"demo>   {label}: {row}", flush=True)
        for row in db.execute("SELECT score, votes FROM post_stats WHERE post_id = %s", (post,)):
            print(f"demo>   post_stats: score={row[0]} votes={row[1]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

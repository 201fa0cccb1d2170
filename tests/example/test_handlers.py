"""The example handlers one change at a time, with the test kit's factory and runner: what a
user's handler unit tests look like. Their database work runs against the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from cdc.runtime import Outcome
from cdc.settings import Settings
from cdc.tables.config import load_watched_tables
from cdc.testing import ChangeFactory, HandlerRunner
from handlers.comments import tell_post_author
from handlers.users import email_changed, welcome
from tests.example.conftest import ROOT

pytestmark = pytest.mark.stack
WATCHED = load_watched_tables(ROOT / "cdc.yaml")


@pytest.fixture
def runner(cdc_settings: Settings) -> Iterator[HandlerRunner]:
    with psycopg.connect(
        cdc_settings.pg_conninfo(),
        password=cdc_settings.pg_password.get_secret_value(),
        autocommit=True,
    ) as conn:
        conn.execute((ROOT / "handlers" / "schema.sql").read_bytes())
    with HandlerRunner(cdc_settings, WATCHED) as r:
        yield r


def notifications(settings: Settings, user_id: int) -> list[tuple[str, str]]:
    with psycopg.connect(
        settings.pg_conninfo(), password=settings.pg_password.get_secret_value()
    ) as conn:
        rows = conn.execute(
            "SELECT kind, message FROM notifications WHERE user_id = %s ORDER BY id", (user_id,)
        ).fetchall()
    return [(str(k), str(m)) for k, m in rows]


def test_user_handlers(runner: HandlerRunner, cdc_settings: Settings) -> None:
    changes = ChangeFactory(WATCHED)
    uid = 10**9 + secrets.randbelow(10**9)
    user = {"id": uid, "handle": "hopper", "email": "old@x", "created_at": dt.datetime.now(dt.UTC)}

    created = changes.insert("users", user)
    assert runner.run(welcome, created).outcome is Outcome.DONE
    moved = changes.update("users", user, email="new@x")
    for _ in range(2):  # a redelivery changes nothing
        assert runner.run(email_changed, moved).outcome is Outcome.DONE
    assert notifications(cdc_settings, uid) == [
        ("welcome", "Welcome, hopper!"),
        ("email_changed", "Your email address changed from old@x to new@x."),
    ]
    # Filters: an update that leaves the email alone, and an op the handler does not take.
    assert runner.run(email_changed, changes.update("users", user, handle="h")).outcome is (
        Outcome.SKIPPED
    )
    assert runner.run(welcome, changes.delete("users", user)).outcome is Outcome.SKIPPED
    # The excluded password_hash never reaches the row; a row missing a model field is
    # dead-lettered before the handler runs.
    assert "password_hash" not in (
        changes.insert("users", user | {"password_hash": "x"}).after or {}
    )
    broken = runner.run(welcome, changes.insert("users", {"id": uid + 1, "handle": "no email"}))
    assert broken.outcome is Outcome.DEAD_LETTER
    assert broken.reason.startswith("row does not fit User")


def test_async_comment_handler(runner: HandlerRunner, cdc_settings: Settings) -> None:
    changes = ChangeFactory(WATCHED)
    # A comment on a post that is gone by the time the handler runs: nobody to tell.
    orphan = changes.insert("comments", {"id": 1, "post_id": -1, "author_id": -1, "body": "x"})
    run = runner.run(tell_post_author, orphan)
    assert (run.outcome, run.published) == (Outcome.DONE, [])
    with psycopg.connect(
        cdc_settings.pg_conninfo(), password=cdc_settings.pg_password.get_secret_value()
    ) as conn:
        post, author = conn.execute(
            "SELECT p.id, p.author_id FROM posts p ORDER BY id LIMIT 1"
        ).fetchone() or (None, None)
        commenter = conn.execute(
            "SELECT id FROM users WHERE id <> %s ORDER BY id LIMIT 1", (author,)
        ).fetchone()
    assert commenter is not None
    comment = changes.insert(
        "comments", {"id": 2, "post_id": post, "author_id": commenter[0], "body": "hello"}
    )
    first = runner.run(tell_post_author, comment)
    again = runner.run(tell_post_author, comment)
    assert first.outcome is again.outcome is Outcome.DONE
    (record,) = first.published
    assert record.topic == "app.notifications"
    assert record.key == str(author).encode()
    assert dict(record.headers)["cdc.cause"] == comment.idempotency_key.encode()
    with psycopg.connect(
        cdc_settings.pg_conninfo(), password=cdc_settings.pg_password.get_secret_value()
    ) as conn:
        rows = conn.execute(
            "SELECT user_id, kind FROM notifications WHERE change_key = %s",
            (comment.idempotency_key,),
        ).fetchall()
    assert rows == [(author, "comment")]  # two runs, one notification

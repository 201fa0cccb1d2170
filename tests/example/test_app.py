"""End to end: SQL in PostgreSQL, through Debezium, Kafka and the consumer, to the example
handlers' effects in PostgreSQL; every operation, snapshot reads, the workflow of domain
events, and redelivery."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc import DomainEvent, emit
from cdc.runtime import Handled
from cdc.testing import RecordReader
from handlers.comments import TOPIC
from handlers.models import PostPublished, PostSubmitted
from tests.example.conftest import App

pytestmark = pytest.mark.stack


def test_snapshot_reads_only_where_asked(app: App) -> None:
    """Rows that existed before capture arrive as snapshot reads: the votes table takes them
    (cdc.yaml) and so does the post counter (its decorator); the audit trail and the welcome
    notification do not."""
    consumer = app.consumer
    consumer.wait_for("votes", "r")
    read = consumer.wait_for("posts", "r")
    assert [r.handler for r in read.runs] == ["handlers.posts.count_posts"]
    post_id, author_id = app.one("SELECT id, author_id FROM posts ORDER BY id LIMIT 1")
    assert app.one("SELECT score, votes FROM post_stats WHERE post_id = %s", (post_id,)) == (1, 1)
    assert app.one("SELECT posts FROM user_stats WHERE user_id = %s", (author_id,)) == 1
    users = consumer.wait_for("users", "r")
    assert users.runs == ()  # held back: no handler of users asked for snapshot reads
    assert app.sql("SELECT 1 FROM audit_log WHERE op = 'r'") == []
    # (Scoped to the rows seeded before capture: users made by earlier runs were welcomed.)
    assert (
        app.sql(
            "SELECT 1 FROM notifications n JOIN users u ON u.id = n.user_id "
            "WHERE n.kind = 'welcome' AND u.handle IN ('ada', 'linus')"
        )
        == []
    )


def user(app: App, handle: str) -> int:
    uid: int = app.one(
        "INSERT INTO users (handle, email, password_hash) VALUES (%s, %s, 'x') RETURNING id",
        (handle, f"{handle}@example.org"),
    )
    return uid


def audit(app: App, op: str, table: str, key: dict[str, Any]) -> tuple[Any, ...]:
    row: tuple[Any, ...] = app.one(
        "SELECT changed, before, after FROM audit_log WHERE op = %s AND table_name = %s "
        "AND row_key = %s::jsonb",
        (op, table, json.dumps(key)),
    )
    return row


def test_each_operation_has_its_effect(app: App) -> None:
    c = app.consumer
    handle = f"grace_{uuid.uuid4().hex[:6]}"
    grace = user(app, handle)

    # Insert: a welcome notification and an audit row without the excluded column.
    c.wait_for("users", "c", lambda ch: ch.key == {"id": grace})
    assert app.one(
        "SELECT message FROM notifications WHERE user_id = %s AND kind = 'welcome'", (grace,)
    ) == (f"Welcome, {handle}!")
    _, before, after = audit(app, "c", "public.users", {"id": grace})
    assert before is None
    assert after["handle"] == handle
    assert "password_hash" not in after

    # Update of the email: the handler reads the old row (REPLICA IDENTITY FULL).
    app.sql("UPDATE users SET email = 'grace@navy.mil' WHERE id = %s", (grace,))
    c.wait_for("users", "u", lambda ch: bool(ch.after and ch.after["email"] == "grace@navy.mil"))
    assert app.one(
        "SELECT message FROM notifications WHERE user_id = %s AND kind = 'email_changed'",
        (grace,),
    ) == (f"Your email address changed from {handle}@example.org to grace@navy.mil.")
    changed, before, after = audit(app, "u", "public.users", {"id": grace})
    assert changed == ["email"]
    assert (before["email"], after["email"]) == (f"{handle}@example.org", "grace@navy.mil")

    # An update that leaves the email alone does not wake the email handler.
    app.sql("UPDATE users SET handle = %s WHERE id = %s", (handle + "_h", grace))
    update = c.wait_for(
        "users", "u", lambda ch: bool(ch.after and ch.after["handle"].endswith("_h"))
    )
    assert [r.handler for r in update.runs] == ["handlers.audit.audit"]

    # Posts: the author's count follows inserts and deletes.
    post = app.one(
        "INSERT INTO posts (author_id, title) VALUES (%s, 'Compilers') RETURNING id", (grace,)
    )
    c.wait_for("posts", "c", lambda ch: ch.key == {"id": post})
    assert app.one("SELECT posts FROM user_stats WHERE user_id = %s", (grace,)) == 1

    # A comment (async handler, DEFAULT identity table) notifies the post's author and
    # publishes the notification; the commenter's running total goes up by one.
    ada = app.one("SELECT id FROM users WHERE handle = 'ada'")
    comments_before = app.one("SELECT comments FROM user_stats WHERE user_id = %s", (ada,))
    with RecordReader(app.consumer.settings.kafka_bootstrap, [TOPIC]) as reader:
        comment = app.one(
            "INSERT INTO comments (post_id, author_id, body) VALUES (%s, %s, 'Nice') RETURNING id",
            (post, ada),
        )
        handled = c.wait_for("comments", "c", lambda ch: ch.key == {"id": comment})
        assert {(r.handler, r.outcome.value) for r in handled.runs} == {
            ("handlers.comments.tell_post_author", "done"),
            ("handlers.comments.count_comments", "done"),
        }
        assert (
            app.one("SELECT comments FROM user_stats WHERE user_id = %s", (ada,))
            == comments_before + 1
        )
        assert app.one(
            "SELECT message FROM notifications WHERE user_id = %s AND kind = 'comment'", (grace,)
        ) == ("ada commented on 'Compilers'.")
        key = str(grace).encode()
        records = reader.wait(lambda rs: any(r.key() == key for r in rs), timeout=30)
        # (Only this run's: on a reused stack the topic holds earlier runs' records too.)
        (record,) = [r for r in records if r.key() == key]
        headers = dict(record.headers() or [])
        assert headers["cdc.cause"] == handled.event.idempotency_key.encode()  # type: ignore[union-attr]

    # Votes: insert, update and delete move the score.
    app.sql("INSERT INTO votes (post_id, voter_id, value) VALUES (%s, %s, 1)", (post, ada))
    c.wait_for("votes", "c", lambda ch: bool(ch.after and ch.after["post_id"] == post))
    assert app.one("SELECT score, votes FROM post_stats WHERE post_id = %s", (post,)) == (1, 1)
    app.sql("UPDATE votes SET value = -1 WHERE post_id = %s AND voter_id = %s", (post, ada))
    c.wait_for("votes", "u", lambda ch: bool(ch.after and ch.after["post_id"] == post))
    assert app.one("SELECT score, votes FROM post_stats WHERE post_id = %s", (post,)) == (-1, 1)
    app.sql("DELETE FROM votes WHERE post_id = %s AND voter_id = %s", (post, ada))
    c.wait_for("votes", "d", lambda ch: bool(ch.before and ch.before["post_id"] == post))
    assert app.one("SELECT score, votes FROM post_stats WHERE post_id = %s", (post,)) == (0, 0)

    # Delete: the count drops, the audit keeps the old row, the post's stats go.
    app.sql("DELETE FROM posts WHERE id = %s", (post,))
    c.wait_for("posts", "d", lambda ch: ch.key == {"id": post})
    assert app.one("SELECT posts FROM user_stats WHERE user_id = %s", (grace,)) == 0
    _, before, after = audit(app, "d", "public.posts", {"id": post})
    assert (before["title"], after) == ("Compilers", None)
    assert app.sql("SELECT 1 FROM post_stats WHERE post_id = %s", (post,)) == []


def submit(app: App, author: int, title: str) -> int:
    """The application's transaction: the post and its ``post-submitted`` event."""
    with app.db.transaction():
        post: int = app.one(
            "INSERT INTO posts (author_id, title) VALUES (%s, %s) RETURNING id", (author, title)
        )
        emit(
            app.db,
            "post",
            post,
            "post-submitted",
            PostSubmitted(post_id=post, author_id=author, title=title),
        )
    return post


def test_a_submitted_post_is_reviewed_published_and_announced(app: App) -> None:
    c = app.consumer
    author = user(app, f"hopper_{uuid.uuid4().hex[:6]}")
    good = submit(app, author, "Compilers for everyone")
    bad = submit(app, author, "Win the LOTTERY")
    of = lambda post: lambda e: e.aggregate_id == str(post)  # noqa: E731

    # submitted -> approved -> published, each step emitting the next in its transaction.
    chain = [
        c.wait_for_event(t, of(good), timeout=120)
        for t in ("post-submitted", "post-approved", "post-published")
    ]
    assert [[(r.handler, r.outcome.value) for r in h.runs] for h in chain] == [
        [("handlers.moderation.review", "done")],
        [("handlers.moderation.publish", "done")],
        [("handlers.moderation.announce", "done")],
    ]
    event = chain[-1].event
    assert isinstance(event, DomainEvent)
    published = PostPublished.model_validate(event.payload)
    verdict, published_at = app.one(
        "SELECT verdict, published_at FROM post_reviews WHERE post_id = %s", (good,)
    )
    assert (verdict, published_at) == ("approved", published.published_at)
    assert app.one(
        "SELECT message FROM notifications WHERE user_id = %s AND kind = 'published'", (author,)
    ) == ("'Compilers for everyone' is published.")

    # The other branch: rejected, with the reason, and never published.
    c.wait_for_event("post-rejected", of(bad), timeout=120)
    assert app.one(
        "SELECT verdict, reason, published_at FROM post_reviews WHERE post_id = %s", (bad,)
    ) == ("rejected", "mentions lottery", None)
    assert app.one(
        "SELECT message FROM notifications WHERE user_id = %s AND kind = 'rejected'", (author,)
    ) == ("'Win the LOTTERY' was rejected: mentions lottery.")


def test_a_post_held_too_long_for_review_brings_a_reminder(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review holds the post and emits the reminder with a delay, in one transaction;
    the scheduler delivers it at its time; the post still held, the author is told."""
    monkeypatch.setenv("APP_REVIEW_DEADLINE_S", "3")
    c = app.consumer
    author = user(app, f"lamport_{uuid.uuid4().hex[:6]}")
    held = submit(app, author, "A miracle cure for bugs")
    submitted = c.wait_for_event("post-submitted", lambda e: e.aggregate_id == str(held), 120)
    reviewed_at = app.one("SELECT reviewed_at FROM post_reviews WHERE post_id = %s", (held,))
    assert app.one("SELECT verdict FROM post_reviews WHERE post_id = %s", (held,)) == "held"
    assert [r.outcome.value for r in submitted.runs] == ["done"]

    reminder = c.wait_for_event("post-review-overdue", lambda e: e.aggregate_id == str(held), 60)
    assert [(r.handler, r.outcome.value) for r in reminder.runs] == [
        ("handlers.moderation.remind_moderators", "done")
    ]
    event = reminder.event
    assert isinstance(event, DomainEvent)
    assert event.occurred_at is not None  # when the scheduler moved it into the outbox
    waited = (event.occurred_at - reviewed_at).total_seconds()
    assert 2.9 <= waited < 10, waited
    assert app.one(
        "SELECT message FROM notifications WHERE user_id = %s AND kind = 'review-overdue'",
        (author,),
    ) == ("'A miracle cure for bugs' waits for a moderator; it takes longer than usual.")
    # Neither published nor rejected.
    assert app.sql(
        "SELECT kind FROM notifications WHERE user_id = %s "
        "AND kind IN ('published', 'rejected', 'review-overdue')",
        (author,),
    ) == [("review-overdue",)]


EFFECTS = {
    "notifications": "SELECT change_key, user_id, kind, message FROM notifications",
    "audit_log": "SELECT change_key, table_name, op, row_key, changed, before, after, "
    "committed_at FROM audit_log",
    "post_stats": "SELECT post_id, score, votes FROM post_stats",
    "user_stats": "SELECT user_id, posts, comments FROM user_stats",
    "post_reviews": "SELECT post_id, verdict, reason, reviewed_at, published_at FROM post_reviews",
}


def effects(app: App) -> dict[str, list[tuple[Any, ...]]]:
    return {name: sorted(app.sql(q), key=repr) for name, q in EFFECTS.items()}


def test_every_change_delivered_twice_has_no_second_effect(app: App) -> None:
    """A second consumer group reads every topic again from the start: each change reaches
    the handlers a second time, and the effects stay exactly as they were: the idempotent
    handlers rewrite the same rows, the ledger handler skips what it already counted."""
    first = app.consumer
    marker = user(app, f"twice_{uuid.uuid4().hex[:6]}")
    post = submit(app, marker, "Twice told tales")
    first.wait_for("users", "c", lambda ch: ch.key == {"id": marker})
    first.wait_for_event("post-published", lambda e: e.aggregate_id == str(post), timeout=120)
    first.wait_idle()  # the audit trail's open list written too
    before = effects(app)
    events_before = outbox_records(app)
    assert before["notifications"]
    assert before["audit_log"]
    handled_by_first = {(h.topic, h.partition, h.offset) for h in first.handled}
    assert handled_by_first

    again = app.pipelines.start(first.watched, ["handlers"], isolate=False, apply=False)

    def coordinates(handled: list[Handled]) -> set[tuple[str, int, int]]:
        return {(h.topic, h.partition, h.offset) for h in handled}

    again.wait_until(
        lambda _: coordinates(again.handled) >= handled_by_first,
        "every record the first consumer handled",
    )
    assert sum(len(h.runs) for h in again.handled) > 10  # handlers really ran again
    ledger_runs = {
        (r.handler, r.outcome.value)
        for h in again.handled
        for r in h.runs
        if r.handler
        in (
            "handlers.comments.count_comments",
            "handlers.moderation.review",
            "handlers.moderation.publish",
        )
    }
    # The workflow's steps emitted no second follow-up: their emits rolled back with the
    # ledger claim.
    assert ledger_runs == {
        ("handlers.comments.count_comments", "duplicate"),
        ("handlers.moderation.review", "duplicate"),
        ("handlers.moderation.publish", "duplicate"),
    }
    assert effects(app) == before
    assert outbox_records(app) == events_before


def outbox_records(app: App) -> int:
    """How many events the outbox's topics hold."""
    consumer = Consumer(app.consumer.settings.kafka_config(**{"group.id": "count"}))
    try:
        topics = consumer.list_topics(timeout=10).topics
        prefix = f"{app.consumer.watched.outbox.topic_prefix}."  # type: ignore[union-attr]
        return sum(
            consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
            for name, meta in topics.items()
            if name.startswith(prefix)
            for p in meta.partitions
        )
    finally:
        consumer.close()

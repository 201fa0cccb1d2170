"""A workflow of domain events: a submitted post is reviewed, an approved post is published,
a published post is announced to its author (a rejected one gets the reason instead). A post
the review cannot decide is held for a moderator; if it is still held after
``APP_REVIEW_DEADLINE_S`` seconds (a day by default), a delayed ``post-review-overdue`` event
reminds the moderators and tells the author it takes longer.

The application emits ``post-submitted`` in the transaction that inserts the post (see
``handlers.demo``). Each step writes its effect and emits the next event in one transaction
with its ledger row, so a step redelivered after a crash neither repeats its effect nor emits
its follow-up twice.
"""

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from cdc import Context, DomainEvent, on_event
from handlers.models import PostPublished, PostReviewed, PostSubmitted
from handlers.store import NOTIFY, notification

BANNED = ("casino", "lottery")
HELD = ("crypto", "miracle")  # for a moderator to decide


def review_deadline() -> timedelta:
    """How long a held post may wait for a moderator before the reminder."""
    return timedelta(seconds=float(os.environ.get("APP_REVIEW_DEADLINE_S", 24 * 3600)))


@on_event("post-submitted", model=PostSubmitted, ledger=True)
def review(event: DomainEvent[PostSubmitted], ctx: Context) -> None:
    post = event.payload
    banned = [word for word in BANNED if word in post.title.lower()]
    held = [word for word in HELD if word in post.title.lower()]
    reviewed = PostReviewed(
        **post.model_dump(),
        verdict="rejected" if banned else "held" if held else "approved",
        reason=f"mentions {', '.join(banned or held)}" if banned or held else None,
    )
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO post_reviews (post_id, verdict, reason) VALUES (%s, %s, %s) "
            "ON CONFLICT (post_id) DO UPDATE SET verdict = EXCLUDED.verdict, "
            "reason = EXCLUDED.reason, reviewed_at = now()",
            (post.post_id, reviewed.verdict, reviewed.reason),
        )
        if reviewed.verdict == "held":
            # The reminder waits in the database, in this transaction: no timer to lose.
            deadline = review_deadline()
            ctx.emit(
                conn, "post", post.post_id, "post-review-overdue", reviewed, deliver_after=deadline
            )
        else:
            ctx.emit(conn, "post", post.post_id, f"post-{reviewed.verdict}", reviewed)


@on_event("post-approved", model=PostReviewed, ledger=True)
def publish(event: DomainEvent[PostReviewed], ctx: Context) -> None:
    post = event.payload
    now = datetime.now(UTC)
    with ctx.connection() as conn:
        conn.execute(
            "UPDATE post_reviews SET published_at = %s WHERE post_id = %s", (now, post.post_id)
        )
        published = PostPublished(
            post_id=post.post_id, author_id=post.author_id, title=post.title, published_at=now
        )
        ctx.emit(conn, "post", post.post_id, "post-published", published)


# The last steps only notify, once per event: the notification's key is the event's.
@on_event("post-published", model=PostPublished)
def announce(event: DomainEvent[PostPublished], ctx: Context) -> None:
    tell_author(event, ctx, "published", f"'{event.payload.title}' is published.")


@on_event("post-rejected", model=PostReviewed)
def explain_rejection(event: DomainEvent[PostReviewed], ctx: Context) -> None:
    post = event.payload
    tell_author(event, ctx, "rejected", f"'{post.title}' was rejected: {post.reason}.")


@on_event("post-review-overdue", model=PostReviewed)
def remind_moderators(event: DomainEvent[PostReviewed], ctx: Context) -> None:
    """Still held: the moderators are reminded (a log line here) and the author told."""
    post = event.payload
    with ctx.connection() as conn:
        row = conn.execute(
            "SELECT verdict FROM post_reviews WHERE post_id = %s", (post.post_id,)
        ).fetchone()
        if row is None or row[0] != "held":
            return  # decided in time
        ctx.log.warning("post.review_overdue", post_id=post.post_id, reason=post.reason)
        message = f"'{post.title}' waits for a moderator; it takes longer than usual."
        conn.execute(NOTIFY, notification(event, post.author_id, "review-overdue", message))


def tell_author(event: DomainEvent[Any], ctx: Context, kind: str, message: str) -> None:
    with ctx.connection() as conn:
        conn.execute(NOTIFY, notification(event, event.payload.author_id, kind, message))

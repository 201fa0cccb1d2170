"""The derived tables' writes."""

from typing import Any

from cdc import Change, DomainEvent

Conn = Any  # a psycopg connection, sync or async


NOTIFY = (
    "INSERT INTO notifications (change_key, user_id, kind, message) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (change_key, user_id) DO NOTHING"
)


def notification(
    change: Change[Any] | DomainEvent[Any], user_id: int, kind: str, message: str
) -> tuple[Any, ...]:
    """Parameters for ``NOTIFY``: one notification per change (or event) and user, however
    often it is delivered."""
    return (change.idempotency_key, user_id, kind, message)


def recount_posts(conn: Conn, author_id: int) -> None:
    """Recomputed from the source rows, so order and repetition do not matter."""
    conn.execute(
        "INSERT INTO user_stats (user_id, posts) "
        "SELECT %(a)s, count(*) FROM posts WHERE author_id = %(a)s "
        "ON CONFLICT (user_id) DO UPDATE SET posts = EXCLUDED.posts, updated_at = now()",
        {"a": author_id},
    )


def count_comment(conn: Conn, author_id: int) -> None:
    """Not safe to repeat on its own: the caller runs it under the ledger."""
    conn.execute(
        "INSERT INTO user_stats (user_id, posts, comments) "
        "SELECT %(a)s, count(*), 1 FROM posts WHERE author_id = %(a)s "
        "ON CONFLICT (user_id) DO UPDATE "
        "SET comments = user_stats.comments + 1, updated_at = now()",
        {"a": author_id},
    )


def recount_votes(conn: Conn, post_id: int) -> None:
    conn.execute(
        "INSERT INTO post_stats (post_id, score, votes) "
        "SELECT %(p)s, coalesce(sum(value), 0), count(*) FROM votes WHERE post_id = %(p)s "
        "ON CONFLICT (post_id) DO UPDATE "
        "SET score = EXCLUDED.score, votes = EXCLUDED.votes, updated_at = now()",
        {"p": post_id},
    )
    conn.execute(
        "DELETE FROM post_stats WHERE post_id = %(p)s "
        "AND NOT EXISTS (SELECT 1 FROM posts WHERE id = %(p)s)",
        {"p": post_id},
    )

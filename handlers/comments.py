"""Comments: tell a post's author (async, publishing a follow-up record), and count each
user's comments (a running total: only the ledger keeps it exact under redelivery). The
comments table keeps DEFAULT replica identity: neither handler needs the old row."""

from cdc import Change, Context, on_change
from handlers.models import Comment
from handlers.store import NOTIFY, count_comment, notification

TOPIC = "app.notifications"


@on_change("comments", ops="c", model=Comment)
async def tell_post_author(change: Change[Comment], ctx: Context) -> None:
    comment = change.after
    assert comment is not None
    async with ctx.aconnection() as conn:
        cur = await conn.execute(
            "SELECT p.author_id, p.title, u.handle FROM posts p, users u "
            "WHERE p.id = %s AND u.id = %s",
            (comment.post_id, comment.author_id),
        )
        found = await cur.fetchone()
        if found is None:
            return  # the post or the commenter is gone by now: nobody to tell
        author_id, title, commenter = found
        if author_id == comment.author_id:
            return
        message = f"{commenter} commented on {title!r}."
        await conn.execute(NOTIFY, notification(change, author_id, "comment", message))
    # Published on every delivery (at least once); the record's cdc.cause header lets a
    # downstream consumer drop the repeats.
    ctx.publish(TOPIC, {"user_id": author_id, "kind": "comment", "message": message}, key=author_id)


@on_change("comments", ops="c", model=Comment, ledger=True)
def count_comments(change: Change[Comment], ctx: Context) -> None:
    """An increment, not a recount: applied twice it would count twice. With ``ledger=True``
    the change is recorded in the same transaction, so a redelivery is skipped."""
    comment = change.after
    assert comment is not None
    with ctx.connection() as conn:
        count_comment(conn, comment.author_id)

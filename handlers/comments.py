"""Tell a post's author about a new comment. Async, to show that async handlers work the
same way. The comments table keeps DEFAULT replica identity: this handler needs no old row."""

from cdc import Change, Context, on_change
from handlers.models import Comment
from handlers.store import NOTIFY, notification

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

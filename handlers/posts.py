"""Each author's post count."""

from cdc import Change, Context, on_change
from handlers.models import Post
from handlers.store import recount_posts


# Snapshot reads too: the posts that existed before capture started count as well.
@on_change("posts", ops="cd", snapshot_reads=True, model=Post)
def count_posts(change: Change[Post], ctx: Context) -> None:
    post = change.row
    assert post is not None
    with ctx.connection() as conn:
        recount_posts(conn, post.author_id)


@on_change("posts", ops="d", model=Post)
def forget_stats(change: Change[Post], ctx: Context) -> None:
    """A deleted post has no score. (Votes cascade, but a post without votes sends none.)"""
    post = change.before
    assert post is not None
    with ctx.connection() as conn:
        conn.execute("DELETE FROM post_stats WHERE post_id = %s", (post.id,))

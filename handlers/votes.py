"""Each post's score. The votes table takes snapshot reads (cdc.yaml), so votes cast before
capture started are counted too."""

from cdc import Change, Context, on_change
from handlers.models import Vote
from handlers.store import recount_votes


@on_change("votes", model=Vote)
def tally(change: Change[Vote], ctx: Context) -> None:
    vote = change.row
    assert vote is not None
    with ctx.connection() as conn:
        recount_votes(conn, vote.post_id)

"""Notifications about a user's own account."""

from cdc import Change, Context, on_change
from handlers.models import User
from handlers.store import NOTIFY, notification


@on_change("users", ops="c", model=User)
def welcome(change: Change[User], ctx: Context) -> None:
    user = change.after
    assert user is not None
    with ctx.connection() as conn:
        conn.execute(NOTIFY, notification(change, user.id, "welcome", f"Welcome, {user.handle}!"))


@on_change("users", ops="u", columns=["email"], model=User)
def email_changed(change: Change[User], ctx: Context) -> None:
    """Needs the old address: the users table has REPLICA IDENTITY FULL (cdc.yaml)."""
    before, after = change.before, change.after
    assert before is not None
    assert after is not None
    message = f"Your email address changed from {before.email} to {after.email}."
    with ctx.connection() as conn:
        conn.execute(NOTIFY, notification(change, after.id, "email_changed", message))
    ctx.log.info("email.changed", user_id=after.id)

"""The example application: users write posts, comment on them and vote on them.

Each module holds the handlers of one concern; `cdc run` finds them by importing this
package (``CDC_HANDLERS=handlers``). Every handler is idempotent: a change delivered twice
has no second effect.

- ``audit``: an audit trail of every change to users and posts, old and new row.
- ``users``: a welcome notification; a notification when an email address changes.
- ``posts``: each author's post count (snapshot reads included, so existing posts count);
  a deleted post's score.
- ``comments``: tells a post's author about a new comment, and publishes it (async).
- ``votes``: each post's score (the table takes snapshot reads, see cdc.yaml).
- ``moderation``: a workflow of domain events through the outbox: a submitted post is
  reviewed, published and announced, one event leading to the next.
"""

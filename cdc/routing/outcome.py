"""What a handler can say about a change besides "done" (returning None).

Return or raise either: ``raise Retry("inventory service busy", after=5)``,
``return DeadLetter("order references a deleted customer")``. Any other exception is taken
as transient and retried with backoff; when the attempts run out, the record goes to the
dead-letter topic.
"""

from __future__ import annotations


class Retry(Exception):
    """Try this change again: after ``after`` seconds, or after the next backoff step."""

    def __init__(self, reason: str = "asked to retry", *, after: float | None = None) -> None:
        self.reason = reason
        self.after = after
        super().__init__(reason)


class DeadLetter(Exception):
    """This change cannot be handled, now or later: send it to the dead-letter topic now."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

"""When a recurring schedule is due: a cron expression (UTC, through croniter) or a plain
interval ("30s", "5m", "2h", "1d", or a `timedelta`) counted from the Unix epoch, so every
consumer computes the same due times without talking to the others.

Catch-up rule: after downtime a schedule fires **once**, for the latest due time it missed,
with the number of earlier slots it skipped (``missed``); never once per missed slot."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Counting skipped slots of a fast schedule after a long outage would cost time for a figure
# nobody needs exactly.
MISSED_CAP = 10_000


@dataclass(frozen=True)
class Spec:
    """A parsed schedule: ``text`` as written, and either a cron expression or an interval."""

    text: str
    interval: timedelta | None = None

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after ``moment``."""
        if self.interval is not None:
            step = self.interval / timedelta(microseconds=1)
            elapsed = (moment - EPOCH) / timedelta(microseconds=1)
            return EPOCH + timedelta(microseconds=(elapsed // step + 1) * step)
        found: datetime = croniter(self.text, moment.astimezone(UTC)).get_next(datetime)
        return found

    def latest_due(self, after: datetime, now: datetime) -> tuple[datetime, int] | None:
        """The latest due time in (``after``, ``now``] and how many earlier ones it passes
        over (the catch-up rule); None when nothing is due."""
        first = self.next_after(after)
        if first > now:
            return None
        if self.interval is not None:
            latest = self.next_after(now - self.interval)
            if latest > now:  # `now` itself is not on the grid
                latest -= self.interval
            return latest, min(round((latest - first) / self.interval), MISSED_CAP)
        due, missed = first, 0
        while missed < MISSED_CAP:
            following = self.next_after(due)
            if following > now:
                return due, missed
            due, missed = following, missed + 1
        # Past the cap: jump straight to the latest due time.
        last: datetime = croniter(self.text, now.astimezone(UTC)).get_prev(datetime)
        if self.next_after(last) <= now:  # `now` itself is a due time
            last = self.next_after(last)
        return last, missed


def parse_spec(value: str | timedelta) -> Spec:
    """A `Spec` from a cron expression (5 fields, or 6 with seconds last), an interval such as
    ``"30s"``, or a `timedelta`. Raises ValueError saying what is wrong."""
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError(f"interval {value} must be positive")
        return Spec(f"{value.total_seconds():g}s", value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"schedule {value!r} must be a cron expression or an interval")
    found = _INTERVAL.match(value)
    if found:
        seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
        if seconds < 0.1:
            raise ValueError(f"interval {value!r} is shorter than 100 ms")
        return Spec(value.strip(), timedelta(seconds=seconds))
    text = " ".join(value.split())
    if not croniter.is_valid(text) or len(text.split()) not in (5, 6):
        raise ValueError(
            f"{value!r} is neither a cron expression (e.g. '0 3 * * *') "
            "nor an interval (e.g. '30s', '5m', '2h', '1d')"
        )
    return Spec(text)

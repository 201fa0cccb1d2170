"""Delayed and recurring events: `emit(..., deliver_at=...)` waits in a table beside the
outbox; `@every` / ``schedules:`` fire at due times; one scheduler among the consumers (an
advisory lock) moves what is due into the outbox."""

from cdc.schedule.declare import Fired, Schedule, every
from cdc.schedule.scheduler import Scheduler, start_scheduler

__all__ = ["Fired", "Schedule", "Scheduler", "every", "start_scheduler"]

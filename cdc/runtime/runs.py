"""A handler run's outcome and what a handler's result means: the values the dispatcher, the
executor and the groups pass between them, and the backoff between attempts."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from cdc.errors import DecodeError, EmitError
from cdc.routing import DeadLetter, Retry
from cdc.runtime.context import Outgoing
from cdc.runtime.ledger import AlreadyProcessed


class Outcome(StrEnum):
    DONE = "done"
    RETRY = "retry"  # this attempt failed; another may succeed
    DEAD_LETTER = "dead_letter"  # no attempt will succeed
    DUPLICATE = "duplicate"  # the ledger says this handler already processed the change
    SKIPPED = "skipped"  # the handler's filters do not want the change (test kit only)


@dataclass(slots=True)
class HandlerRun:
    """How one handler fared with one change (over all its attempts). (Slotted: one is made
    per run that is not simply done on the consumer thread.)"""

    handler: str
    outcome: Outcome
    attempts: int = 1
    reason: str = ""
    error: BaseException | None = None
    retry_after: float | None = None
    published: list[Outgoing] = field(default_factory=list)
    seconds: float = 0.0  # in the handler, over all attempts (backoff waits excluded)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, and how many attempts in all."""

    attempts: int = 5
    first: float = 0.5
    most: float = 30.0
    jitter: float = 0.5  # each wait is drawn from [ceiling * (1 - jitter), ceiling]

    def delay(self, failed_attempts: int) -> float:
        ceiling = min(self.most, self.first * 2 ** (failed_attempts - 1))
        return random.uniform(ceiling * (1 - self.jitter), ceiling)  # noqa: S311 - jitter


@dataclass(frozen=True)
class Later:
    """A handler run waiting before its next attempt: which attempt, the time spent in the
    handler so far, database outages in a row, and how long to wait."""

    attempt: int
    spent: float
    outage: int
    delay: float
    paced: bool = False  # the wait is the workload's rate: the attempt's start is taken


class Stopping(Exception):
    """The consumer is stopping while a change waits for its next attempt."""


# Connection exceptions (class 08) and the server shutting down or starting (57P01-57P03).
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03")


def unreachable(error: BaseException | None) -> bool:
    """Whether ``error`` says the database cannot be reached (refused, dropped, shutting
    down, no pooled connection in time), as opposed to refusing what the handler did."""
    if isinstance(error, PoolTimeout):
        return True
    if not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate
    # No SQLSTATE: the client lost or never had the connection (psycopg's own error).
    return state is None or state.startswith(_UNREACHABLE_STATES)


def sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def outcome_of(name: str, attempt: int) -> Callable[[Any], tuple[str, str]]:
    def outcome(result: Any) -> tuple[str, str]:
        run = meaning(name, result, attempt)
        return run.outcome.value, run.reason

    return outcome


def meaning(name: str, result: Any, attempt: int) -> HandlerRun:
    if result is None:
        return HandlerRun(name, Outcome.DONE, attempt)
    if isinstance(result, Retry):
        return HandlerRun(name, Outcome.RETRY, attempt, result.reason, result, result.after)
    if isinstance(result, DeadLetter):
        return HandlerRun(name, Outcome.DEAD_LETTER, attempt, result.reason, result)
    if isinstance(result, EmitError | DecodeError):
        # The same event would be refused on every attempt; a column that contradicts its
        # schema (converted when the handler reads it) reads the same way on every attempt.
        return HandlerRun(name, Outcome.DEAD_LETTER, attempt, str(result), result)
    if isinstance(result, AlreadyProcessed):
        return HandlerRun(name, Outcome.DUPLICATE, attempt, str(result))
    if isinstance(result, Exception):
        return HandlerRun(
            name, Outcome.RETRY, attempt, f"{type(result).__name__}: {result}", result
        )
    return HandlerRun(
        name,
        Outcome.DEAD_LETTER,
        attempt,
        f"returned {type(result).__name__}; a handler returns None, Retry or DeadLetter",
    )

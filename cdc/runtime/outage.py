"""Waiting out an outage (the schema registry, the broker) instead of blaming the record."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import structlog

from cdc.runtime.runs import Backoff, Stopping

log = structlog.get_logger("cdc.consumer")
T = TypeVar("T")


def persist(
    what: str,
    errors: type[Exception],
    call: Callable[[], T],
    wait: Callable[[float], bool],
    backoff: Backoff,
) -> T:
    """``call()`` until it stops raising ``errors`` (an outage, not a bad record), with
    backoff, logging ``<what>.unavailable``; `Stopping` if ``wait`` says to give up meanwhile."""
    attempt = 0
    while True:
        try:
            return call()
        except errors as exc:
            attempt += 1
            delay = backoff.delay(min(attempt, 8))
            log.error(f"{what}.unavailable", error=str(exc), retry_in_s=round(delay, 2))
            if wait(delay):
                raise Stopping from exc

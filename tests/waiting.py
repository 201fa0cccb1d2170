"""Waiting for the real stack: poll until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    probe: Callable[[], T], done: Callable[[T], bool] = bool, what: str = "", timeout: float = 90.0
) -> T:
    """Call ``probe`` until ``done`` holds for what it returns; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or probe} not within {timeout}s; last: {value!r}")
        time.sleep(0.2)

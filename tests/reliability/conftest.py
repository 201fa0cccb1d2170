"""The reliability suite runs on the session's stack; the fault drills restart its parts."""

from collections.abc import Iterator

import pytest

from tests.integration.conftest import pipeline
from tests.reliability.workload import CdcRun

__all__ = ["pipeline"]


@pytest.fixture(autouse=True)
def no_consumer_outlives_its_test() -> Iterator[None]:
    """A drill that fails before stopping its consumers must not leave them running."""
    yield
    while CdcRun.started:
        run = CdcRun.started.pop()
        if run.alive():
            run.proc.kill()
            run.proc.wait(timeout=30)

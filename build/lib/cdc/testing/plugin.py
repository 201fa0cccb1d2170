"""pytest plugin (installed with the package): the ``cdc_stack`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdc.stack.endpoints import StackEndpoints
from cdc.testing.stack import start_stack


@pytest.fixture(scope="session")
def cdc_stack() -> Iterator[StackEndpoints]:
    """The real stack: PostgreSQL, Kafka, Kafka Connect with Debezium, Apicurio Registry."""
    with start_stack() as endpoints:
        yield endpoints

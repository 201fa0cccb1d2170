"""pytest plugin (installed with the package): the real stack and consumers on it.

- ``cdc_stack``: PostgreSQL, Kafka, Kafka Connect with Debezium and Apicurio, for the session
  (``cdc_running_stack``: the same, with ``restart(component, crash=...)`` for fault drills).
- ``cdc_settings``: ``Settings`` pointing at it.
- ``cdc_pipelines``: start the consumer with your handlers and your watched-tables file
  (``cdc_pipelines.start(Path("cdc.yaml"), ["myapp.handlers"], schema=[Path("schema.sql")])``)
  and ``wait_for`` the changes it handled; everything is removed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdc.settings import Settings
from cdc.stack.endpoints import StackEndpoints
from cdc.testing.pipeline import Pipelines
from cdc.testing.stack import RunningStack, running_stack


@pytest.fixture(scope="session")
def cdc_running_stack() -> Iterator[RunningStack]:
    """The real stack, with ``restart(component, crash=...)`` for fault drills."""
    with running_stack() as stack:
        yield stack


@pytest.fixture(scope="session")
def cdc_stack(cdc_running_stack: RunningStack) -> StackEndpoints:
    """The real stack: PostgreSQL, Kafka, Kafka Connect with Debezium, Apicurio Registry."""
    return cdc_running_stack.endpoints


@pytest.fixture(scope="session")
def cdc_settings(cdc_stack: StackEndpoints) -> Settings:
    return cdc_stack.settings()


@pytest.fixture
def cdc_pipelines(cdc_stack: StackEndpoints) -> Iterator[Pipelines]:
    pipelines = Pipelines(cdc_stack)
    try:
        yield pipelines
    finally:
        pipelines.close()

"""The console's browser tests run beside the real stack, with the integration tests'
per-test pipeline."""

from tests.integration.conftest import pipeline

__all__ = ["pipeline"]

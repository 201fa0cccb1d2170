"""The reliability suite runs on the session's stack; the fault drills restart its parts."""

from tests.integration.conftest import pipeline

__all__ = ["pipeline"]

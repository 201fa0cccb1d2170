"""The ``workloads:`` section of the watched-tables file: each lane of handlers with its own
consumer group, concurrency, in-flight window, retries, time limit and rate."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_WORKLOAD = "default"
# Part of a consumer group id, a compose service and a Kubernetes Deployment name.
_WORKLOAD = r"[a-z][a-z0-9-]{0,39}"
WORKLOAD_NAME = re.compile(rf"^{_WORKLOAD}\Z")
WorkloadName = Annotated[str, Field(pattern=rf"^{_WORKLOAD}$")]


class RetryOptions(BaseModel):
    """Attempts in all, and the exponential backoff between them; unset: the settings'
    ``CDC_RETRY_*``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: Annotated[int, Field(ge=1)] | None = None
    backoff_s: Annotated[float, Field(gt=0)] | None = None
    backoff_max_s: Annotated[float, Field(gt=0)] | None = None
    # Each wait is drawn from [ceiling * (1 - jitter), ceiling].
    jitter: Annotated[float, Field(ge=0, le=1)] | None = None


class RateLimit(BaseModel):
    """At most ``runs`` handler attempts per ``per_s`` seconds, started evenly spaced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runs: Annotated[int, Field(ge=1)]
    per_s: Annotated[float, Field(gt=0)] = 1.0

    @property
    def interval_s(self) -> float:
        return self.per_s / self.runs


class WorkloadOptions(BaseModel):
    """One workload; what is unset comes from the settings (``CDC_CONCURRENCY`` ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: Annotated[int, Field(ge=1)] | None = None
    max_in_flight: Annotated[int, Field(ge=1)] | None = None
    retry: RetryOptions = RetryOptions()
    # An attempt running longer fails (and is retried); unset: CDC_HANDLER_TIMEOUT_S.
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    rate: RateLimit | None = None
    # Default: the consumer's dead-letter topic, shared by every workload.
    dead_letter_topic: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")] | None = None
    # Default: CDC_GROUP_ID for `default`, CDC_GROUP_ID.<name> for the others.
    group_id: Annotated[str, Field(min_length=1)] | None = None
    # A key parked for a handler holds the handler's later changes of it (handlers may say
    # otherwise): `cdc.runtime.held_keys`.
    keep_order: bool = True
    # Consumers of this workload in the generated compose and Kubernetes outputs.
    replicas: Annotated[int, Field(ge=1)] = 1

"""Traces, where OpenTelemetry's API is installed (the ``tracing`` extra): `emit` writes the
current W3C ``traceparent`` into the outbox row, Debezium carries it into the event's
headers, and a handler's run is a span continuing that trace. Without the API nothing is
imported and nothing changes; without an SDK configured, the API's spans cost next to
nothing."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the extra is not installed
    trace = None  # type: ignore[assignment]

HEADER = "traceparent"  # the outbox column and the record header, as W3C names it
_PROPAGATOR = TraceContextTextMapPropagator() if trace is not None else None
# A proxy until the application sets a tracer provider, then that provider's tracer.
_TRACER = trace.get_tracer("cdc") if trace is not None else None


def enabled() -> bool:
    """Whether spans are made: the API is installed and the application set a tracer
    provider (until it does, the API's proxy makes spans nobody keeps: skipped)."""
    return trace is not None and not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider
    )


def traced_call(
    func: Callable[..., Any],
    typed: Any,
    ctx: Any,
    handler: str,
    event: Any,
    attempt: int,
    outcome: Callable[[Any], tuple[str, str]],
) -> Any:
    """Call a handler in its span, current while it runs (so what it emits carries it):
    what it returned or raised; for a coroutine function, a coroutine whose span opens and
    closes around the await, on the loop that runs it. ``outcome``: what a result means
    (outcome, reason)."""
    attrs, parent = attributes(handler, event, attempt), parent_of(event)
    if inspect.iscoroutinefunction(func):

        async def awaited() -> Any:
            with handler_span(handler, attrs, parent) as span:
                try:
                    result = await func(typed, ctx)
                except Exception as exc:
                    finish(span, *outcome(exc))
                    raise
                finish(span, *outcome(result))
                return result

        return awaited()
    with handler_span(handler, attrs, parent) as span:
        try:
            result = func(typed, ctx)
        except Exception as exc:
            result = exc
        finish(span, *outcome(result))
    return result


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span current here (None: none, or no OpenTelemetry)."""
    if _PROPAGATOR is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(HEADER)


@contextlib.contextmanager
def handler_span(
    handler: str, attributes: Mapping[str, Any], traceparent: str | None = None
) -> Iterator[Any]:
    """A span for one attempt of a handler; its parent is the trace ``traceparent`` names
    (the transaction that emitted the event), else whatever is current. Yields None
    without OpenTelemetry."""
    if _TRACER is None or _PROPAGATOR is None:
        yield None
        return
    parent = _PROPAGATOR.extract({HEADER: traceparent}) if traceparent else None
    with _TRACER.start_as_current_span(
        f"cdc handle {handler}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=dict(attributes),
        record_exception=False,  # the outcome says what failed, once
        set_status_on_exception=False,
    ) as span:
        yield span


def finish(span: Any, outcome: str, reason: str = "") -> None:
    """Note the run's outcome on its span; one that did not succeed is an error."""
    if span is None:
        return
    span.set_attribute("cdc.outcome", outcome)
    if outcome not in ("done", "duplicate", "skipped"):
        span.set_status(Status(StatusCode.ERROR, reason[:500]))


def header(headers: Any) -> str | None:
    """The ``traceparent`` among a Kafka record's headers (a list of pairs), if any."""
    for key, value in headers or ():
        if key == HEADER and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def attributes(handler: str, event: Any, attempt: int) -> dict[str, Any]:
    """A handler run's span attributes: where its record came from and what it is."""
    out: dict[str, Any] = {"cdc.handler": handler, "cdc.attempt": attempt}
    kafka = getattr(event, "kafka", None)
    if kafka is not None:
        out |= {
            "messaging.system": "kafka",
            "messaging.destination.name": kafka.topic,
            "messaging.kafka.destination.partition": kafka.partition,
            "messaging.kafka.message.offset": kafka.offset,
        }
    if isinstance(event, list):  # changes taken together: a batch, a transaction
        out["cdc.changes"] = len(event)
        transaction = getattr(event, "transaction", None)
        if transaction is not None:
            out["cdc.transaction"] = transaction
    elif hasattr(event, "aggregate_type"):  # a domain event
        out |= {
            "cdc.event_type": event.type,
            "cdc.event_id": event.id,
            "cdc.aggregate_type": event.aggregate_type,
        }
    else:
        out |= {"cdc.table": event.table, "cdc.op": event.op.value}
    return out


def parent_of(event: Any) -> str | None:
    """The ``traceparent`` a domain event carries from the transaction that emitted it."""
    if not hasattr(event, "aggregate_type"):
        return None
    return header(event.kafka.headers)

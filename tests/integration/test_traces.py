"""Traces on the real stack, with OpenTelemetry's SDK and its in-memory exporter: a handler
run is a span; a domain event's handler continues the trace of the transaction that emitted
the event (`emit` writes its `traceparent` into the outbox row, Debezium carries it into the
record's headers), so a workflow of events is one trace from the application's transaction
to its last step; a table change's handler starts a trace of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdc import Change, Context, DomainEvent, emit, on_change, on_event
from cdc.routing import Router, handlers_of
from cdc.testing import RunningConsumer
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # once per process: OpenTelemetry's rule
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()
    _EXPORTER.shutdown()  # the provider stays (it cannot be unset): keep no more spans


def test_a_workflow_is_one_trace_from_the_emitting_transaction(
    pipeline: Pipeline, spans: InMemorySpanExporter
) -> None:
    p = pipeline
    items = p.table("items")
    p.sql(f"CREATE TABLE {items} (id int PRIMARY KEY)")
    p.write_file({items: {}}, outbox={})
    p.apply()

    @on_event("order-placed")
    async def reserve(event: DomainEvent, ctx: Context) -> None:
        # A coroutine handler: its span is current on the loop, where it emits.
        async with ctx.aconnection() as conn:
            await ctx.aemit(conn, "order", event.aggregate_id, "order-reserved", {"step": 2})

    @on_event("order-reserved")
    def ship(event: DomainEvent, ctx: Context) -> None:
        pass

    @on_change(f"public.{items}")
    def added(change: Change, ctx: Context) -> None:
        pass

    router = Router([h for f in (reserve, ship, added) for h in handlers_of(f)])
    settings = p.stack.settings(watched_tables=p.file, group_id=p.id, http_port=None)
    tracer = trace.get_tracer("the application")
    with RunningConsumer(settings, p.watched(), router) as consumer:
        with tracer.start_as_current_span("place order") as app_span, p.db.transaction():
            emit(p.db, "order", 7, "order-placed", {"step": 1})
        p.sql(f"INSERT INTO {items} VALUES (1)")
        consumer.wait_for_event("order-reserved", lambda e: e.aggregate_id == "7", timeout=90)
        consumer.wait_for(items, "c", timeout=90)

    def span_of(handler: object) -> ReadableSpan:
        name = f"cdc handle {handler.__module__}.{handler.__qualname__}"  # type: ignore[attr-defined]
        (span,) = [s for s in spans.get_finished_spans() if s.name == name]
        return span

    first, second = span_of(reserve), span_of(ship)
    root = app_span.get_span_context()
    assert first.context is not None
    assert second.context is not None
    # One trace: the application's transaction, then each step, each the parent of the next.
    assert first.context.trace_id == second.context.trace_id == root.trace_id
    assert first.parent is not None
    assert first.parent.span_id == root.span_id
    assert second.parent is not None
    assert second.parent.span_id == first.context.span_id
    assert first.attributes is not None
    assert first.attributes["cdc.event_type"] == "order-placed"
    assert first.attributes["cdc.outcome"] == "done"
    assert first.attributes["messaging.destination.name"] == f"{p.outbox_prefix}.order"
    # A table change: a trace of its own, with where it came from.
    change = span_of(added)
    assert change.parent is None
    assert change.attributes is not None
    assert change.attributes["cdc.table"] == f"public.{items}"
    assert change.attributes["cdc.op"] == "c"
    assert change.attributes["messaging.kafka.message.offset"] >= 0

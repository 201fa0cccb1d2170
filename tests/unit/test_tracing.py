"""Tracing without OpenTelemetry changes nothing; with it, `emit` writes the current trace
context and a handler's span continues the one a record's header names."""

from __future__ import annotations

import subprocess
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from cdc import tracing


def test_without_opentelemetry_nothing_is_imported_and_nothing_changes() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"  # as if the extra were absent
        "import cdc, cdc.outbox, cdc.runtime, cdc.tracing as t\n"
        "assert not t.enabled() and t.current_traceparent() is None\n"
        "with t.handler_span('h', {}, '00-' + '1' * 32 + '-' + '2' * 16 + '-01') as s:\n"
        "    assert s is None\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry.')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_span_continues_the_trace_its_traceparent_names() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("emitting transaction") as parent:
        traceparent = tracing.current_traceparent()
    context = parent.get_span_context()
    assert traceparent is not None
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    assert tracing.header([("eventType", b"x"), ("traceparent", traceparent.encode())]) == (
        traceparent
    )
    assert tracing.header([("eventType", b"x")]) is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | TracerProvider)

"""Domain events through the outbox, without the stack: the captured Outbox Event Router
records decoded in every encoding, the connector config, routing by type, payload models,
the unknown-type policy's inputs, and what `emit` refuses before it reaches the database."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from cdc import Context, DecodeError, DomainEvent, EmitError, KafkaCoordinates, emit, on_event
from cdc.check import ConnectorState, LiveState, LiveTable, Severity, compare
from cdc.decoding import JsonDecoder
from cdc.routing import Router, handlers_of, on_change
from cdc.runtime import Outcome
from cdc.tables.config import Encoding, parse_watched_tables
from cdc.tables.connector import DatabaseEndpoint, connector_config, outbox_topic_pattern
from cdc.tables.sql import publication_tables
from cdc.testing import run_handler
from tests.corpus.load import (
    ENCODINGS,
    OUTBOX,
    Line,
    OrderPlaced,
    decode,
    decoder,
    expected,
    records,
)

WATCHED = parse_watched_tables(
    """
connector: {name: shop, topic_prefix: shop}
tables:
  public.orders: {}
outbox: {}
"""
)
DB = DatabaseEndpoint(host="db", port=5432, database="app", user="dbz", password="pw")


def corpus_events(encoding: str) -> list[DomainEvent]:
    dec = decoder(encoding)
    events = [decode(dec, r) for r in records(encoding) if r.kafka.topic.startswith(OUTBOX)]
    assert all(isinstance(e, DomainEvent) for e in events)
    return events  # type: ignore[return-value]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_committed_events_decode_alike_in_every_encoding(encoding: str) -> None:
    events = corpus_events(encoding)
    # The rolled-back emit of the capture never reached Kafka.
    assert [
        {
            "id": e.id,
            "type": e.type,
            "aggregate_type": e.aggregate_type,
            "aggregate_id": e.aggregate_id,
            "payload": e.payload,
        }
        for e in events
    ] == expected()["events"]
    assert [e.kafka.topic for e in events] == [f"{OUTBOX}order", f"{OUTBOX}invoice"]
    assert all(e.occurred_at is not None for e in events)
    assert events[0].idempotency_key == f"event/{events[0].id}"


def test_a_payload_model_types_the_event() -> None:
    seen: list[DomainEvent[OrderPlaced]] = []

    @on_event("order-placed", model=OrderPlaced)
    def placed(event: DomainEvent[OrderPlaced], ctx: Context) -> None:
        seen.append(event)

    run = run_handler(placed, corpus_events("json")[0])
    assert run.outcome is Outcome.DONE
    assert seen[0].payload == OrderPlaced(
        order_id=17, total="12.50", lines=[Line(sku="é-1", qty=2)]
    )
    assert seen[0].aggregate_id == "17"


def test_a_payload_that_does_not_fit_is_dead_lettered_without_a_call() -> None:
    class Strict(BaseModel):
        order_id: int
        currency: str

    @on_event("order-placed", model=Strict)
    def placed(event: DomainEvent[Strict], ctx: Context) -> None:
        raise AssertionError("never called")

    run = run_handler(placed, corpus_events("avro")[0])
    assert run.outcome is Outcome.DEAD_LETTER
    assert "payload does not fit Strict" in run.reason
    assert "currency" in run.reason


def test_a_handler_of_another_type_is_refused() -> None:
    @on_event("invoice-sent")
    def sent(event: DomainEvent, ctx: Context) -> None:
        pass

    with pytest.raises(Exception, match="handles \\[\"event 'invoice-sent'\"\\]"):
        run_handler(sent, corpus_events("json")[0])


def kafka(**headers: bytes) -> KafkaCoordinates:
    return KafkaCoordinates(
        topic="shop.outbox.order", partition=2, offset=41, headers=tuple(headers.items())
    )


GOOD = {"id": b"5f0c", "eventType": b"order-placed", "aggregateType": b"order"}


@pytest.mark.parametrize(
    ("key", "value", "headers", "fragment"),
    [
        (b'"17"', b'"{}"', {**GOOD, "eventType": b""}, "headers.eventType: missing"),
        (b'"17"', b'"{}"', {"eventType": b"x", "aggregateType": b"y"}, "headers.id: missing"),
        (b'"17"', b'"{}"', {**GOOD, "aggregateType": b"\xff"}, "headers.aggregateType: invalid"),
        (b'"17"', b'"{not json"', GOOD, "payload: not JSON"),
        (b'"17"', None, GOOD, "without a payload"),
        (None, b'"{}"', GOOD, "expected the aggregate id"),
        (b'{"id": 1}', b'"{}"', GOOD, "expected the aggregate id"),
        (b'"17"', b'"\xff"', GOOD, "invalid UTF-8"),
    ],
)
def test_broken_outbox_records_name_where_and_why(
    key: bytes | None, value: bytes | None, headers: dict[str, bytes], fragment: str
) -> None:
    with pytest.raises(DecodeError) as info:
        JsonDecoder(schemas=False).decode(key, value, kafka(**headers), outbox=True)
    assert "shop.outbox.order[2]@41" in str(info.value)
    assert fragment in str(info.value)


def test_the_connector_routes_only_the_outbox_table() -> None:
    config = connector_config(WATCHED, DB)
    assert config["table.include.list"] == r"public\.orders,public\.outbox"
    assert config["transforms"] == "outbox"
    assert config["transforms.outbox.type"] == "io.debezium.transforms.outbox.EventRouter"
    assert config["transforms.outbox.predicate"] == "outboxTable"
    assert config["predicates.outboxTable.pattern"] == r"shop\.public\.outbox"
    assert config["transforms.outbox.route.topic.replacement"] == "outbox.event.${routedByValue}"
    assert config["transforms.outbox.table.fields.additional.placement"] == (
        "type:header:eventType,aggregatetype:header:aggregateType,traceparent:header:traceparent"
    )
    assert "public.outbox" in {str(t) for t in publication_tables(WATCHED)}
    assert outbox_topic_pattern(WATCHED) == r"^outbox\.event\..+"
    without = parse_watched_tables("tables:\n  public.orders: {}\n")
    assert not any(
        k.startswith(("transforms", "predicates")) for k in connector_config(without, DB)
    )
    assert outbox_topic_pattern(without) is None
    # In Avro, the rows keep their NULLs before the router reads them.
    avro = WATCHED.model_copy(
        update={"connector": WATCHED.connector.model_copy(update={"encoding": Encoding.AVRO})}
    )
    assert connector_config(avro, DB)["transforms"] == "nulls,outbox"


def test_events_are_routed_by_type() -> None:
    @on_event("order-placed")
    def one(event: DomainEvent, ctx: Context) -> None: ...

    @on_event("order-placed")
    def two(event: DomainEvent, ctx: Context) -> None: ...

    @on_change("public.orders")
    def orders(change: Any, ctx: Context) -> None: ...

    router = Router([*handlers_of(one), *handlers_of(two), *handlers_of(orders)])
    placed, sent = corpus_events("json")
    assert [r.name for r in router.routes_for(placed) or []] == [
        h.name for h in (*handlers_of(one), *handlers_of(two))
    ]
    assert router.routes_for(sent) is None  # no handler for this type: the unrouted policy
    assert router.gate.admit(placed)
    assert router.tables() == ["public.orders"]
    assert router.event_types() == ["order-placed"]


def test_declarations_are_checked() -> None:
    with pytest.raises(Exception, match="non-empty string"):
        on_event("  ")(lambda event, ctx: None)
    with pytest.raises(Exception, match="two positional arguments"):
        on_event("x")(lambda event: None)
    with pytest.raises(Exception, match="pydantic model class"):
        on_event("x", model=dict)(lambda event, ctx: None)  # type: ignore[arg-type]


def test_check_wants_an_outbox_for_event_handlers() -> None:
    @on_event("order-placed")
    def placed(event: DomainEvent, ctx: Context) -> None: ...

    no_outbox = parse_watched_tables("tables:\n  public.orders: {}\n")
    orders = LiveTable("d", frozenset({"id"}), frozenset({"id"}))
    state = LiveState(
        ConnectorState("http://connect", {}, {}), frozenset(), {"public.orders": orders}
    )
    findings = compare(handlers_of(placed), no_outbox, state).findings
    assert any(f.severity is Severity.ERROR and "declares no outbox" in f.problem for f in findings)
    bad_outbox = LiveTable("d", frozenset({"id"}), frozenset({"id", "payload"}))
    state = with_tables(state, {"public.orders": orders, "public.outbox": bad_outbox})
    findings = compare(handlers_of(placed), WATCHED, state).findings
    assert any(
        "lacks the column(s) aggregatetype, aggregateid, type" in f.problem for f in findings
    )
    findings = compare(handlers_of(placed), WATCHED, with_tables(state, {})).findings
    assert any("no outbox table" in f.problem for f in findings)


def with_tables(state: LiveState, tables: dict[str, LiveTable]) -> LiveState:
    return LiveState(state.connector, state.publication, tables)


class FakeConnection:
    """Never reached: `emit` refuses bad input before touching the connection."""

    def transaction(self) -> Any:
        raise AssertionError("emit reached the database")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("or.der", 1, "x", {}), "aggregate_type 'or.der' names a topic"),
        (("", 1, "x", {}), "aggregate_type '' names a topic"),
        (("order", None, "x", {}), "aggregate_id None"),
        (("order", "x" * 256, "x", {}), "aggregate_id"),
        (("order", 1, " ", {}), "event_type ' '"),
        (("order", 1, "x", {"at": object()}), "the payload is not JSON"),
        (("order", 1, "x", {"n": float("nan")}), "the payload is not JSON"),
        (("order\n", 1, "x", {}), "names a topic"),
        (("o" * 201, 1, "x", {}), "names a topic"),
        (("order", 1, "x", None), "payload is None"),
    ],
)
def test_emit_refuses_what_would_break_downstream(args: tuple[Any, ...], fragment: str) -> None:
    with pytest.raises(EmitError, match="cannot emit") as info:
        emit(FakeConnection(), *args)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_a_refused_emit_in_a_handler_is_dead_lettered_not_retried() -> None:
    @on_event("order-placed")
    def placed(event: DomainEvent, ctx: Context) -> None:
        ctx.emit(FakeConnection(), "or der", 1, "next", {})  # type: ignore[arg-type]

    run = run_handler(placed, corpus_events("json")[0])
    assert run.outcome is Outcome.DEAD_LETTER
    assert isinstance(run.error, EmitError)
    assert "'or der' names a topic" in run.reason

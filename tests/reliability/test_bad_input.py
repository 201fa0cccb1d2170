"""Bad input on the real stack: for each encoding, a real pipeline (a table and an outbox, a
real change and a real event through Debezium first), then every kind of broken or hostile
record of `tests.corpus.hostile` produced straight into the same topics, each followed by a
copy of the real record. Each hostile record lands in the dead-letter topic exactly once,
byte for byte, with headers naming where it came from and a reason saying what was wrong;
every good record behind it reaches its handler; the consumer keeps running and commits to
the end of both topics. The corpus is the same in short and full runs: it is fast.

Also: the dead-letter topic takes records larger than the broker's default limit, whether
the sink makes it or finds it made with the default."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from pydantic import BaseModel

from cdc import Change, Context, DomainEvent, emit, on_change, on_event
from cdc.decoding import RegistrySchemas
from cdc.errors import DecodeError
from cdc.routing import Router, handlers_of
from cdc.runtime import Handled
from cdc.runtime.consumer import record_headers
from cdc.runtime.context import Resources
from cdc.runtime.dead_letter import HEADER, DeadLetterSink, Rejected
from cdc.stack.endpoints import StackEndpoints
from cdc.tables.limits import RecordLimits
from cdc.testing import RecordReader, RunningConsumer, read_records
from tests.corpus.hostile import ENCODINGS, HUGE, Bad, Kind, Sample, Target, kinds_for
from tests.integration.conftest import Pipeline
from tests.reliability.report import record
from tests.waiting import eventually

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

T = TypeVar("T")
EVENT = "thing-happened"
# The columns the kinds break (named as in the corpus's all_types table).
COLUMNS = (
    "id int PRIMARY KEY, c_int int, c_numeric numeric(12, 3), c_text text, c_jsonb jsonb, "
    "c_uuid uuid, c_int_array int[]"
)
GOOD_HUGE_TEXT = 900_000  # a real change this large must still be handled
FIGURES: dict[str, dict[str, Any]] = {}  # per encoding, for the report


class Thing(BaseModel):
    n: int


def row(row_id: int) -> Callable[[Change], bool]:
    def matches(change: Change) -> bool:
        # Hostile records are among those finished, in any order: one whose id contradicts
        # its schema cannot be read, and is not the row waited for.
        try:
            return (change.after or {}).get("id") == row_id
        except DecodeError:
            return False

    return matches


def aggregate(n: int) -> Callable[[DomainEvent], bool]:
    def matches(event: DomainEvent) -> bool:
        try:  # as for rows: a hostile event may not be readable
            return event.aggregate_id == str(n)
        except DecodeError:
            return False

    return matches


@dataclass(frozen=True)
class Sent:
    """A record produced into a topic, and where it landed."""

    topic: str
    offset: int
    record: Bad
    kind: Kind | None  # None: a good record


def produce(bootstrap: str, records: list[tuple[str, Bad, Kind | None]]) -> list[Sent]:
    """Produce in order, one partition per topic; return each record with its offset."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,  # in order, each once
            # The huge kinds are close to the broker's limit, over librdkafka's default.
            "message.max.bytes": 1_048_576,
            "linger.ms": 5,
        }
    )
    offsets: dict[int, int] = {}
    errors: list[str] = []

    def delivered(index: int) -> Callable[[Any, Message], None]:
        def report(err: Any, msg: Message) -> None:
            if err is not None:
                errors.append(f"#{index}: {err}")
            else:
                offsets[index] = int(msg.offset() or 0)

        return report

    for index, (topic, bad, _) in enumerate(records):
        producer.produce(
            topic, bad.value, bad.key, partition=0, headers=list(bad.headers),
            on_delivery=delivered(index),
        )  # fmt: skip
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors
    return [Sent(topic, offsets[i], bad, kind) for i, (topic, bad, kind) in enumerate(records)]


def sample_of(msg: Message, encoding: str, schemas: RegistrySchemas | None, foreign: int) -> Sample:
    value = msg.value()
    assert value is not None
    return Sample(
        encoding, msg.key(), value, record_headers(msg), schemas, foreign if schemas else None
    )


def not_avro_schema_id(registry_url: str, name: str) -> int:
    """A Protobuf schema registered in the real registry: an id no Avro record may use."""
    response = httpx.post(
        f"{registry_url}/apis/ccompat/v7/subjects/{name}/versions",
        json={"schemaType": "PROTOBUF", "schema": f'syntax = "proto3";\nmessage {name} {{}}\n'},
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        timeout=10,
    )
    response.raise_for_status()
    return int(response.json()["id"])


def committed_and_end(bootstrap: str, group: str, topics: list[str]) -> list[tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(t, 0) for t in topics], timeout=10)
        return [
            (c.offset, consumer.get_watermark_offsets(TopicPartition(c.topic, 0), timeout=10)[1])
            for c in committed
        ]
    finally:
        consumer.close()


def dead_letters(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Message]:
    """Every record of the dead-letter topic, up to its end."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}"})
    try:
        low, high = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        probe.close()
    with RecordReader(bootstrap, [topic]) as reader:
        return reader.wait(lambda rs: len(rs) >= high - low, timeout)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_bad_input_is_dead_lettered_and_nothing_behind_it_is_lost(
    pipeline: Pipeline, encoding: str
) -> None:
    p = pipeline
    table, outbox = p.table("items"), p.table("outbox")
    p.sql(f"CREATE TABLE {table} ({COLUMNS})")
    p.write_file({table: {}}, outbox={"table": f"public.{outbox}"}, encoding=encoding)
    p.apply()
    topic, events_topic = p.topic(table), f"{p.outbox_prefix}.thing"

    rows: list[Change] = []
    events: list[DomainEvent] = []
    lock = threading.Lock()

    # A hostile record has the key of the good copy behind it: kept in order (the default),
    # the copy would wait behind it for a replay (tests/integration/test_held_keys.py). Here
    # every good record must run at once.
    @on_change(table, keep_order=False)
    def take_row(change: Change, ctx: Context) -> None:
        # Every column and the key read: a value contradicting its schema fails here.
        _ = change.key, change.after.to_dict() if change.after is not None else None
        with lock:
            rows.append(change)

    @on_event(EVENT, model=Thing, keep_order=False)
    def take_event(event: DomainEvent[Thing], ctx: Context) -> None:
        with lock:
            events.append(event)

    watched = p.watched()
    router = Router([h for f in (take_row, take_event) for h in handlers_of(f)], watched.tables)
    settings = p.stack.settings(
        watched_tables=p.file,
        group_id=p.id,
        unrouted="dead-letter",
        retry_backoff_s=0.05,
        http_port=None,
    )

    def insert(row_id: int, text: str) -> None:
        p.sql(
            f"INSERT INTO {table} VALUES (%s, 7, 1.5, %s, '{{\"a\": 1}}', %s, '{{1,2}}')",
            (row_id, text, uuid.uuid4()),
        )

    def event(n: int) -> None:
        emit(p.db, "thing", n, EVENT, Thing(n=n), table=f"public.{outbox}")

    with RunningConsumer(settings, watched, router) as consumer:
        # A real change and a real event flow through first: the records to break and copy.
        insert(1, "first")
        event(1)
        consumer.wait_for(table, "c", row(1), timeout=120)
        consumer.wait_for_event(EVENT, aggregate(1), timeout=120)
        bootstrap = p.stack.kafka_bootstrap
        (row_msg,) = read_records(bootstrap, [topic], 1)
        (event_msg,) = read_records(bootstrap, [events_topic], 1)
        schemas = RegistrySchemas(p.stack.registry_url) if encoding == "avro" else None
        foreign = not_avro_schema_id(p.stack.registry_url, f"{p.id}NotAvro") if schemas else 0
        samples: dict[Target, tuple[str, Sample]] = {
            "table": (topic, sample_of(row_msg, encoding, schemas, foreign)),
            "outbox": (events_topic, sample_of(event_msg, encoding, schemas, foreign)),
        }

        # Each hostile record, then a copy of the real one right behind it.
        plan: list[tuple[str, Bad, Kind | None]] = []
        for target, (where, sample) in samples.items():
            good = Bad(sample.key, sample.value, sample.headers)
            for kind in kinds_for(sample, target):
                plan += [(where, kind.build(sample), kind), (where, good, None)]
        sent = produce(bootstrap, plan)
        hostile = [s for s in sent if s.kind is not None]
        good_after = [s for s in sent if s.kind is None]

        # Real changes behind all of it, one of them huge.
        insert(2, "x" * GOOD_HUGE_TEXT)
        insert(3, "last")
        event(2)
        for row_id in (2, 3):
            consumer.wait_for(table, "c", row(row_id))
        consumer.wait_for_event(EVENT, aggregate(2))

        # Every offset of both topics committed: nothing stuck, nothing skipped.
        positions = eventually(
            lambda: committed_and_end(bootstrap, p.id, [topic, events_topic]),
            lambda ps: all(c == end for c, end in ps),
            "the committed offsets at the end of both topics",
            timeout=60,
        )
        assert consumer.runtime.probes.ready() == (True, "ok")

        finished = {(h.topic, h.offset): h for h in list(consumer.handled)}
    if schemas is not None:
        schemas.close()

    # The good records behind the hostile ones reached their handler, and nothing was parked.
    def handled(s: Sent) -> Handled | None:
        h = finished.get((s.topic, s.offset))
        ok = h is not None and not h.parked and [r.outcome.value for r in h.runs] == ["done"]
        return h if ok else None

    lost_good = [(s.topic, s.offset) for s in good_after if handled(s) is None]
    assert not lost_good
    huge_rows = [c for c in rows if c.after and c.after.get("id") == 2]
    assert len(huge_rows) == 1
    assert len((huge_rows[0].after or {})["c_text"]) == GOOD_HUGE_TEXT

    # Every hostile record is in the dead-letter topic exactly once, byte for byte.
    letters = dead_letters(bootstrap, f"{p.id}.dlq")
    by_origin: dict[tuple[str, int], list[Message]] = {}
    for msg in letters:
        headers = dict(record_headers(msg))
        origin = (headers[HEADER + "topic"].decode(), int(headers[HEADER + "offset"]))
        by_origin.setdefault(origin, []).append(msg)
    expected = {(s.topic, s.offset) for s in hostile}
    assert set(by_origin) == expected, (set(by_origin) ^ expected, len(letters))
    assert all(len(msgs) == 1 for msgs in by_origin.values())
    reasons: dict[str, str] = {}
    wrong: list[str] = []
    for s in hostile:
        assert s.kind is not None
        (msg,) = by_origin[(s.topic, s.offset)]
        pairs = record_headers(msg)
        ours = {k[len(HEADER) :]: v for k, v in pairs if k.startswith(HEADER)}
        reason = ours["reason"].decode()
        reasons[s.kind.name] = reason[:160]
        problems = []
        if (msg.value(), msg.key()) != (s.record.value, s.record.key):
            problems.append("bytes differ")
        if [(k, v) for k, v in pairs if not k.startswith(HEADER)] != list(s.record.headers):
            problems.append("original headers differ")
        if (ours["topic"].decode(), ours["partition"], ours["offset"]) != (
            s.topic, b"0", str(s.offset).encode(),
        ):  # fmt: skip
            problems.append(f"coordinates {ours['topic']!r}[{ours['partition']!r}]")
        if s.kind.reason_for(encoding) not in reason:
            problems.append(f"reason {reason[:200]!r} lacks {s.kind.reason_for(encoding)!r}")
        if s.kind.stage in ("decode", "read") and ours["error"] != b"DecodeError":
            problems.append(f"error {ours['error']!r}")
        if len(reason) > 1000:
            problems.append(f"a reason of {len(reason)} characters")
        if problems:
            wrong.append(f"{s.kind.name}: {'; '.join(problems)}")
    assert not wrong, wrong

    sizes = [len(s.record.value or b"") for s in hostile]
    FIGURES[encoding] = {
        "kinds": len(hostile),
        "produced": len(sent),
        "dead_lettered": len(letters),
        "good_after": len(good_after),
        "good_handled": len(good_after) - len(lost_good),
        "largest_bytes": max(sizes),
        "committed_to_end": positions,
        "reasons": reasons,
    }
    names = {name for figures in FIGURES.values() for name in figures["reasons"]}
    record(
        "bad_input",
        kinds=len(names),
        produced=sum(f["produced"] for f in FIGURES.values()),
        dead_lettered=sum(f["dead_lettered"] for f in FIGURES.values()),
        good_after=sum(f["good_after"] for f in FIGURES.values()),
        good_handled=sum(f["good_handled"] for f in FIGURES.values()),
        lost=0,
        by_encoding=FIGURES,
    )
    assert len(hostile) >= 25


def _limit(admin: AdminClient, topic: str) -> int:
    (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    return int(future.result(30)["max.message.bytes"].value)


@pytest.mark.parametrize("made_before", [False, True], ids=["made by the sink", "made before"])
def test_the_dead_letter_topic_takes_records_over_the_default_limit(
    cdc_stack: StackEndpoints, made_before: bool
) -> None:
    """A parked record is its original plus headers: one near the source topic's limit must
    still fit (librdkafka's producer default is 1,000,000 bytes, the broker's 1,048,588)."""
    settings = cdc_stack.settings()
    topic = f"t{uuid.uuid4().hex[:8]}.dlq"
    admin = AdminClient(settings.kafka_config())  # type: ignore[arg-type]
    if made_before:  # as the broker's auto-creation, or an older cdc, made it
        (made,) = admin.create_topics([NewTopic(topic, 1, 1)]).values()
        made.result(30)
        assert _limit(admin, topic) < 1_100_000
    resources = Resources(settings)
    sink = DeadLetterSink(resources, topic)
    value = bytes(range(256)) * (1_500_000 // 256)
    key = b"k" * 40_000
    sink.send(
        Rejected(
            topic="somewhere", partition=0, offset=7, key=key, value=value,
            headers=(("origin", b"\xff"),), reason="too big for the defaults",
            error="DecodeError",
        )
    )  # fmt: skip
    resources.close()
    assert _limit(admin, topic) == RecordLimits().parked
    (parked,) = read_records(cdc_stack.kafka_bootstrap, [topic], 1)
    assert (parked.value(), parked.key()) == (value, key)
    headers = record_headers(parked)
    assert headers[-1] == ("origin", b"\xff")
    assert (HEADER + "reason", b"too big for the defaults") in headers
    assert len(value) > HUGE

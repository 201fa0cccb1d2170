"""The consumer at work on the real stack: two consumers of one group share a topic's
partitions and hand them over without losing a change; the metrics endpoint tells exactly
what a known workload did; a change whose handler fails twice is retried and applied once;
readiness goes down while the consumer drains."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from cdc import Change, Context, Op, Retry, on_change
from cdc.routing import Router, TableHandler, handlers_of
from cdc.runtime import Outcome
from cdc.settings import Settings
from cdc.stack.endpoints import StackEndpoints
from cdc.tables.connector import data_topic
from cdc.testing import RunningConsumer
from tests.integration.conftest import Pipeline
from tests.waiting import eventually

pytestmark = pytest.mark.stack

T = TypeVar("T")
PARTITIONS = 4
ROWS = 200  # distinct keys: enough that the producer's hash lands some on every partition
ATTEMPTS = 3  # retry_attempts: the flaky handler succeeds on the last one
Function = Callable[[Change, Context], None]


# -- helpers ---------------------------------------------------------------------------------


def settings(pipeline: Pipeline, **overrides: Any) -> Settings:
    """A consumer of the pipeline's tables, in a group of the pipeline's own."""
    return pipeline.stack.settings(
        watched_tables=pipeline.file, group_id=pipeline.id, retry_backoff_s=0.05, **overrides
    )


def consumer(pipeline: Pipeline, *handlers: TableHandler, **overrides: Any) -> RunningConsumer:
    watched = pipeline.watched()
    config = settings(pipeline, **overrides)
    return RunningConsumer(config, watched, Router(handlers, watched.tables)).start()


def create_tables(pipeline: Pipeline, *shorts: str) -> tuple[list[str], str]:
    """Watched tables (an integer key and a value) and the effects table handlers write to."""
    tables = [pipeline.table(short) for short in shorts]
    for table in tables:
        pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, value text)")
    effects = pipeline.table("effects")
    pipeline.sql(f"CREATE TABLE {effects} (n serial PRIMARY KEY, tbl text, id int, op text)")
    pipeline.write_file({table: {} for table in tables})
    return tables, effects


def declared(func: Function, table: str, **options: Any) -> TableHandler:
    """``func`` declared as a handler of ``table`` (the tables are named per test)."""
    (handler,) = handlers_of(on_change(table, **options)(func))
    return handler


def recorder(table: str, effects: str) -> TableHandler:
    """A handler that writes each change of ``table`` to ``effects``."""

    def record(change: Change, ctx: Context) -> None:
        note(change, ctx, effects)

    return declared(record, table)


def note(change: Change, ctx: Context, effects: str) -> None:
    row = change.row
    assert row is not None
    with ctx.connection() as conn:
        conn.execute(
            f"INSERT INTO {effects} (tbl, id, op) VALUES (%s, %s, %s)",
            (change.table, row["id"], change.op.value),
        )


def inserts(consumer: RunningConsumer) -> list[tuple[int, int]]:
    """(row id, partition) of every insert the consumer finished, in order."""
    return [
        (h.event.after["id"], h.partition)
        for h in list(consumer.handled)
        if isinstance(h.event, Change) and h.event.op is Op.CREATE and h.event.after is not None
    ]


def gauge(consumer: RunningConsumer, name: str) -> float | None:
    return consumer.runtime.metrics.registry.get_sample_value(name)


def url(consumer: RunningConsumer, path: str) -> str:
    endpoint = eventually(lambda: consumer.runtime.endpoint, what="the HTTP endpoint")
    assert endpoint is not None
    return f"http://127.0.0.1:{endpoint.port}{path}"


def scrape(consumer: RunningConsumer) -> list[Sample]:
    text = httpx.get(url(consumer, "/metrics"), timeout=10).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def values(samples: list[Sample], name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The values of the series ``name``, by the values of ``labels``."""
    return {tuple(s.labels[k] for k in labels): s.value for s in samples if s.name == name}


def status(consumer: RunningConsumer, path: str) -> tuple[int, str]:
    response = httpx.get(url(consumer, path), timeout=10)
    return response.status_code, response.text.strip()


# -- scaling out and handing over --------------------------------------------------------------


def test_two_consumers_share_partitions_and_hand_them_over(pipeline: Pipeline) -> None:
    (items,), effects = create_tables(pipeline, "items")
    watched = pipeline.watched()
    # Made before the connector exists, so Debezium writes to all 4 partitions (by key).
    topic = data_topic(watched, watched.table_names()[0])
    admin = AdminClient(pipeline.settings.kafka_config())  # type: ignore[arg-type]
    (created,) = admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values()
    created.result(timeout=30)
    pipeline.apply()
    handler = recorder(items, effects)
    a = consumer(pipeline, handler)
    b = consumer(pipeline, handler)
    try:
        eventually(
            lambda: (gauge(a, "cdc_assigned_partitions"), gauge(b, "cdc_assigned_partitions")),
            lambda owned: owned == (2, 2),
            "a balanced assignment",
        )
        pipeline.sql(f"INSERT INTO {items} SELECT g, 'v' || g FROM generate_series(1, {ROWS}) g")
        first = set(range(1, ROWS + 1))
        eventually(lambda: {i for i, _ in inserts(a) + inserts(b)} >= first, what="the rows")
        of_a = {p for _, p in inserts(a)}
        of_b = {p for _, p in inserts(b)}
        assert of_a
        assert of_b
        assert not of_a & of_b
        assert of_a | of_b == set(range(PARTITIONS))

        # A leaves: its revoke commits how far it got; B takes its partitions over.
        a.stop()
        handled_by_a = inserts(a)
        pipeline.sql(
            f"INSERT INTO {items} SELECT g, 'v' || g FROM generate_series({ROWS + 1}, {2 * ROWS}) g"
        )
        later = set(range(ROWS + 1, 2 * ROWS + 1))
        eventually(lambda: {i for i, _ in inserts(b)} >= later, what="the later rows on B")
        assert {p for i, p in inserts(b) if i in later} == set(range(PARTITIONS))
        assert gauge(b, "cdc_assigned_partitions") == PARTITIONS
    finally:
        b.stop()
        a.stop()
    # Nothing lost: every insert reached the handler; and since A stopped cleanly, with its
    # position committed, B did not handle any of A's records again.
    applied = Counter(i for (i,) in pipeline.sql(f"SELECT id FROM {effects} WHERE op = 'c'"))
    assert set(applied) == first | later
    assert Counter(i for i, _ in handled_by_a + inserts(b)) == applied
    assert set(applied.values()) == {1}


def test_a_busy_table_does_not_starve_a_quiet_one(pipeline: Pipeline) -> None:
    """A backlog far larger than the in-flight window on one table and a few changes on
    another: the few are handled long before the backlog is worked off."""
    (busy, quiet), _ = create_tables(pipeline, "busy", "quiet")
    pipeline.apply()
    backlog = 3000
    pipeline.sql(
        f"INSERT INTO {busy} SELECT g, repeat('x', 200) FROM generate_series(1, {backlog}) g"
    )
    pipeline.sql(f"INSERT INTO {quiet} SELECT g, 'v' FROM generate_series(1, 20) g")
    topics = {pipeline.topic(t): n for t, n in ((busy, backlog), (quiet, 20))}
    probe = Consumer(pipeline.settings.kafka_config(**{"group.id": f"{pipeline.id}-probe"}))

    def written() -> list[int] | None:
        try:
            probe.list_topics(timeout=10)  # a topic made since the last look is known now
            return [probe.get_watermark_offsets(TopicPartition(t, 0), 10)[1] for t in topics]
        except KafkaException:
            return None  # a topic not made yet

    try:
        # Debezium first: the whole backlog is waiting in Kafka when the consumer starts.
        eventually(written, lambda highs: highs == list(topics.values()), "the backlog in Kafka")
    finally:
        probe.close()

    def work(change: Change, ctx: Context) -> None:
        time.sleep(0.002)

    def glance(change: Change, ctx: Context) -> None:
        pass

    running = consumer(
        pipeline, declared(work, busy), declared(glance, quiet), max_in_flight=40, concurrency=2
    )
    try:

        def handled(table: str) -> int:
            name = f"public.{table}"
            return sum(1 for h in list(running.handled) if h.event and h.event.table == name)

        eventually(lambda: handled(quiet), lambda n: n == 20, "the quiet table's changes")
        assert handled(busy) < backlog // 2
        eventually(lambda: handled(busy), lambda n: n == backlog, "the backlog")
    finally:
        running.stop()


# -- metrics, retries and probes after a known workload --------------------------------------


@dataclass
class Workload:
    """A consumer that has finished: 5 inserts, 2 updates and a delete of ``items`` (handler
    ``record``), an insert of ``flaky`` (``flaky`` fails twice, then succeeds) and an insert
    of ``poison`` (``poison`` always fails: dead-lettered)."""

    pipeline: Pipeline
    consumer: RunningConsumer
    items: str
    flaky: str
    poison: str
    effects: str
    names: dict[str, str]  # handler role -> handler name


@pytest.fixture(scope="module")
def workload(
    cdc_stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workload]:
    pipeline = Pipeline(cdc_stack, Path(tmp_path_factory.mktemp("workload")))
    try:
        (items, flaky, poison), effects = create_tables(pipeline, "items", "flaky", "poison")
        pipeline.apply()

        def fails_twice(change: Change, ctx: Context) -> None:
            if ctx.attempt < 3:
                raise ConnectionError(f"attempt {ctx.attempt} fails")
            note(change, ctx, effects)

        def always_fails(change: Change, ctx: Context) -> None:
            raise ValueError("cannot digest this")

        handlers = {
            "record": recorder(items, effects),
            "flaky": declared(fails_twice, flaky),
            "poison": declared(always_fails, poison),
        }
        running = consumer(pipeline, *handlers.values(), retry_attempts=ATTEMPTS)
        try:
            pipeline.sql(f"INSERT INTO {items} SELECT g, 'v' || g FROM generate_series(1, 5) g")
            pipeline.sql(f"UPDATE {items} SET value = 'changed' WHERE id IN (1, 2)")
            pipeline.sql(f"DELETE FROM {items} WHERE id = 3")
            pipeline.sql(f"INSERT INTO {flaky} VALUES (1, 'flaky')")
            pipeline.sql(f"INSERT INTO {poison} VALUES (1, 'poison')")
            # 10 changes and the delete's tombstone.
            eventually(lambda: len(running.handled), lambda n: n >= 11, "the workload")
            yield Workload(
                pipeline,
                running,
                f"public.{items}",
                f"public.{flaky}",
                f"public.{poison}",
                effects,
                {role: h.name for role, h in handlers.items()},
            )
        finally:
            running.stop()
    finally:
        pipeline.close()


def test_metrics_count_the_workload(workload: Workload) -> None:
    w, name = workload, workload.names
    topics = {w.pipeline.topic(t.removeprefix("public.")) for t in (w.items, w.flaky, w.poison)}

    def settled(samples: list[Sample]) -> bool:
        lag = values(samples, "cdc_consumer_lag", "topic", "partition")
        return lag == {(t, "0"): 0 for t in topics} and values(samples, "cdc_in_flight") == {(): 0}

    # Consumer lag comes with librdkafka's statistics every 5 s: 0 once the offsets are
    # committed. By then nothing is in flight either.
    samples = eventually(lambda: scrape(w.consumer), settled, "committed offsets in the lag")
    assert values(samples, "cdc_records_total", "table", "op", "outcome") == {
        (w.items, "c", "handled"): 5,
        (w.items, "u", "handled"): 2,
        (w.items, "d", "handled"): 1,
        (w.items, "", "held_back"): 1,  # the tombstone
        (w.flaky, "c", "handled"): 1,
        (w.poison, "c", "dead_lettered"): 1,
    }
    assert values(samples, "cdc_handler_retries_total", "handler", "table") == {
        (name["flaky"], w.flaky): 2,
        (name["poison"], w.poison): ATTEMPTS - 1,
    }
    assert values(samples, "cdc_dead_lettered_total", "table", "handler", "error") == {
        (w.poison, name["poison"], "ValueError"): 1
    }
    assert values(samples, "cdc_handler_duration_seconds_count", "handler", "table", "outcome") == {
        (name["record"], w.items, "done"): 8,
        (name["flaky"], w.flaky, "done"): 1,
        (name["poison"], w.poison, "dead_letter"): 1,
    }
    assert values(samples, "cdc_end_to_end_lag_seconds_count", "table") == {
        (w.items,): 8,
        (w.flaky,): 1,
        (w.poison,): 1,
    }
    assert values(samples, "cdc_assigned_partitions") == {(): 3}
    assert values(samples, "cdc_fetch_paused") == {(): 0}
    assert status(w.consumer, "/healthz") == (200, "ok")
    assert status(w.consumer, "/readyz") == (200, "ok")


def test_a_change_failing_twice_is_retried_and_applied_once(workload: Workload) -> None:
    w = workload
    handled = w.consumer.wait_for(w.flaky, "c")
    (run,) = handled.runs
    assert (run.handler, run.outcome, run.attempts) == (w.names["flaky"], Outcome.DONE, 3)
    assert handled.parked == ()
    applied = w.pipeline.sql(f"SELECT tbl, id, op FROM {w.effects} WHERE tbl = %s", (w.flaky,))
    assert applied == [(w.flaky, 1, "c")]
    # The change that never succeeds was tried as often as allowed, then parked.
    parked = w.consumer.wait_for(w.poison, "c")
    assert [(r.outcome, r.attempts) for r in parked.runs] == [(Outcome.DEAD_LETTER, ATTEMPTS)]
    assert parked.parked == (f"gave up after {ATTEMPTS} attempts: ValueError: cannot digest this",)
    assert [h for h in w.consumer.handled if h.event and h.event.table == w.poison] == [parked]


def test_quick_handlers_run_on_the_consumer_thread_and_a_retry_holds_back_only_its_key(
    pipeline: Pipeline,
) -> None:
    """A handler starts out on the workers; once it has proven quick it runs on the
    consumer's own thread. A change it must retry goes to a worker to wait out its backoff,
    with the later changes of its key behind it, while other keys go on."""
    (items,), _ = create_tables(pipeline, "items")
    pipeline.apply()
    runs: list[tuple[int, str, int, str]] = []  # id, op, attempt, thread

    def quick(change: Change, ctx: Context) -> Retry | None:
        row = change.row
        assert row is not None
        runs.append((row["id"], change.op.value, ctx.attempt, threading.current_thread().name))
        if row["id"] == 1000 and change.op is Op.CREATE and ctx.attempt == 1:
            return Retry("not yet", after=2.0)
        return None

    def row_id(n: int) -> Callable[[Change], bool]:
        return lambda c: c.row is not None and c.row["id"] == n

    running = consumer(pipeline, declared(quick, items))
    try:
        pipeline.sql(f"INSERT INTO {items} SELECT g, 'v' FROM generate_series(1, 100) g")
        running.wait_for(items, "c", row_id(100))
        pipeline.sql(f"INSERT INTO {items} VALUES (200, 'v')")
        running.wait_for(items, "c", row_id(200))
        pipeline.sql(f"INSERT INTO {items} VALUES (1000, 'v')")
        pipeline.sql(f"UPDATE {items} SET value = 'w' WHERE id = 1000")
        pipeline.sql(f"INSERT INTO {items} SELECT g, 'v' FROM generate_series(301, 320) g")
        running.wait_for(items, "u", row_id(1000))
    finally:
        running.stop()
    threads = {(id_, op, attempt): thread for id_, op, attempt, thread in runs}
    assert threads[1, "c", 1].startswith("cdc-worker-")
    assert threads[200, "c", 1] == "cdc-consumer"
    key = [(op, attempt, thread[:10]) for id_, op, attempt, thread in runs if id_ == 1000]
    assert key == [("c", 1, "cdc-consum"), ("c", 2, "cdc-worker"), ("u", 1, "cdc-worker")]
    # The rows written after the retried one were handled while it waited out its backoff.
    order = [id_ for id_, *_ in runs]
    retried = order.index(1000, order.index(1000) + 1)
    assert set(order[:retried]) >= set(range(301, 321))


def test_not_ready_while_draining(pipeline: Pipeline) -> None:
    (items,), _ = create_tables(pipeline, "items")
    pipeline.apply()
    entered, release = threading.Event(), threading.Event()

    def hold(change: Change, ctx: Context) -> None:
        entered.set()
        release.wait(60)

    # Written first: the consumer gets partitions only once the table's topic exists.
    pipeline.sql(f"INSERT INTO {items} VALUES (1, 'held')")
    running = consumer(pipeline, declared(hold, items))
    try:
        assert entered.wait(90)
        readyz = url(running, "/readyz")
        assert status(running, "/readyz") == (200, "ok")
        # Stopping: the handler still runs, so the consumer is draining, not gone.
        running.runtime.stop()
        eventually(lambda: status(running, "/readyz"), lambda s: s == (503, "stopping"))
        assert status(running, "/healthz") == (200, "ok")
    finally:
        release.set()
        running.stop()
    handled = running.wait_for(items, "c")
    assert [r.outcome for r in handled.runs] == [Outcome.DONE]
    with pytest.raises(httpx.ConnectError):  # the endpoint closed once the consumer was done
        httpx.get(readyz, timeout=10)

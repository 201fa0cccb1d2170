"""Drills under load on a local cluster of three KRaft brokers and two Connect workers (issue
29): the leader of the busiest partitions SIGKILLed and the brokers restarted one by one, the
Connect worker running Debezium's task SIGKILLed, a consumer frozen past its session and
resumed. Each time, every effect ends up what the source rows imply: nothing lost, nothing
applied twice; and a frozen consumer never commits over the offsets of its successor."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from cdc.connect import ConnectClient
from cdc.stack.local import LocalStack
from tests.diagnose import pipeline_state
from tests.integration.conftest import Pipeline, private_cluster
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.offset_watch import OffsetWatch
from tests.reliability.report import record, scaled
from tests.reliability.workload import POSTS, USERS, CdcRun, ExampleApp, Writer, count_log, finish
from tests.waiting import eventually

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

PARTITIONS = 3  # per table topic: each broker leads some
# Changes a second, short and full: six JVMs, PostgreSQL, the writer and the consumers share
# two cores, and a consumer logging at DEBUG keeps up with about this many (at 300 it falls
# further behind with every drill).
RATE = 150


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalStack]:
    with private_cluster("cdc-drills-") as stack:
        yield stack


@pytest.fixture
def pipeline(cluster: LocalStack, tmp_path: Path) -> Iterator[Pipeline]:
    """The app's own pipeline, on the cluster (the suite's others run on the session stack)."""
    p = Pipeline(cluster.endpoints(), tmp_path)
    try:
        yield p
    finally:
        p.close()


def started_app(pipeline: Pipeline) -> ExampleApp:
    app = ExampleApp(pipeline, partitions=PARTITIONS)
    app.seed(USERS, POSTS)
    return app


def probe(
    app: ExampleApp, since: float, timeout: float = 300, runs: tuple[CdcRun, ...] = ()
) -> float:
    """A new user written now, and the seconds from ``since`` until its welcome is sent:
    the whole path (capture, Kafka, consumer) works again."""
    handle = f"{app.tag}_probe{len(app.users)}"
    (row,) = app.sql(
        "INSERT INTO users (handle, email) VALUES (%s, %s) RETURNING id",
        (handle, f"{handle}+0@example.org"),
    )
    app.users.append(row[0])  # the writer may pick it, and the check counts it
    try:
        eventually(
            lambda: (
                app.sql(
                    "SELECT count(*) FROM notifications WHERE kind = 'welcome' AND user_id = %s",
                    (row[0],),
                )[0][0]
                > 0
            ),
            what=f"the welcome of {handle}",
            timeout=timeout,
        )
    except TimeoutError as exc:
        p = app.pipeline
        state = pipeline_state(p.settings, p.stack.connect_url, p.name, app.groups)
        tails = "".join(f"\n--- {r.log.name}\n{r.tail(30)}" for r in runs)
        raise TimeoutError(f"{exc}\n{state}{tails}") from None
    return round(time.monotonic() - since, 1)


def leaders(app: ExampleApp) -> dict[int, int]:
    """Broker id -> records in the app's table partitions it leads (the busiest first)."""
    admin = AdminClient({"bootstrap.servers": app.pipeline.stack.kafka_bootstrap})
    meta = admin.list_topics(timeout=10)
    group = Consumer(app.pipeline.settings.kafka_config(**{"group.id": f"{app.tag}-watch"}))  # type: ignore[arg-type]
    try:
        load: dict[int, int] = {}
        for topic in app.topics:
            for p, part in meta.topics[topic].partitions.items():
                low, high = group.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                load[part.leader] = load.get(part.leader, 0) + high - low
        return dict(sorted(load.items(), key=lambda kv: -kv[1]))
    finally:
        group.close()


def fully_replicated(app: ExampleApp) -> bool:
    """Every partition of the app's topics has its three replicas in sync again."""
    try:
        admin = AdminClient({"bootstrap.servers": app.pipeline.stack.kafka_bootstrap})
        meta = admin.list_topics(timeout=10)
        return all(
            len(part.isrs) == 3
            for topic in app.topics
            for part in meta.topics[topic].partitions.values()
        )
    except Exception:  # a broker is restarting
        return False


def drill_figures(
    app: ExampleApp, writer: Writer, found: dict[str, Any], logs: list[Path]
) -> dict[str, Any]:
    """What every drill reports: the run's changes, and that nothing was lost or doubled
    (``finish`` has compared every effect with the source rows)."""
    return {
        "changes_written": writer.committed + USERS + POSTS,
        "writer_transactions_cut_off": writer.uncertain,
        "comments_written": found["comments"],
        "comments_counted": found["comments_counted"],
        "notifications": found["notifications"],
        "lost": 0,
        "applied_twice": 0,
        "redeliveries_skipped_by_ledger": count_log(logs, "handler.duplicate"),
        "dead_lettered": count_log(logs, "handler.dead_letter"),
    }


def test_broker_leader_killed_then_rolling_restart(
    cluster: LocalStack, pipeline: Pipeline, tmp_path: Path
) -> None:
    """The broker leading most of the app's records SIGKILLed (``kills`` times, each once
    the cluster is whole again), then every broker restarted cleanly, one after another."""
    kills = scaled(1, 3)
    app = started_app(pipeline)
    run = CdcRun(app, tmp_path / "run.log")
    writer = Writer(app, rate=RATE, batch=10).start()
    started = time.monotonic()
    killed, recovered = [], []
    for _ in range(kills):
        time.sleep(scaled(8, 20))
        eventually(lambda: fully_replicated(app), what="all replicas in sync", timeout=180)
        busiest = next(iter(leaders(app)))
        t0 = time.monotonic()
        cluster.stop(f"kafka-{busiest}", crash=True)
        killed.append(f"kafka-{busiest}")
        recovered.append(probe(app, t0))
        assert run.alive(), run.tail()
        cluster.restart(f"kafka-{busiest}")
    rolling = []
    for node in cluster.kafka_nodes[: scaled(3, 3)]:
        time.sleep(scaled(3, 10))
        eventually(lambda: fully_replicated(app), what="all replicas in sync", timeout=180)
        t0 = time.monotonic()
        cluster.restart(node.name)
        rolling.append({"broker": node.name, "restart_s": round(time.monotonic() - t0, 1)})
        assert run.alive(), run.tail()
    rolling_probe_s = probe(app, time.monotonic())
    time.sleep(scaled(5, 20))
    found = finish(app, writer, [run], timeout=600)
    record(
        "cluster_broker_kills",
        killed=killed,
        seconds_to_recover_after_each_kill=recovered,
        rolling_restart=rolling,
        seconds_to_a_change_handled_after_the_rolling_restart=rolling_probe_s,
        **drill_figures(app, writer, found, [run.log]),
        minutes=round((time.monotonic() - started) / 60, 1),
    )
    assert count_log([run.log], "handler.dead_letter") == 0, run.tail()


def task_worker(url: str, name: str) -> str | None:
    """``host:port`` of the worker running the connector's task, asked of the worker at
    ``url``; None while the group rebalances."""
    try:
        tasks = ConnectClient(url, timeout=5).status(name)["tasks"]
    except Exception:
        return None
    running = [t["worker_id"] for t in tasks if t["state"] == "RUNNING"]
    return running[0] if running else None


def streaming_offset_committed(url: str, name: str) -> bool:
    """Connect holds an offset of the connector's past its initial snapshot. A task killed
    before that takes the snapshot again, and the changes committed meanwhile come only as
    snapshot reads (op r), which handlers without ``snapshot_reads`` never see."""
    try:
        body = httpx.get(f"{url}/connectors/{name}/offsets", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False
    offsets = [o.get("offset") or {} for o in body.get("offsets", [])]
    return any("lsn" in o and not o.get("snapshot") for o in offsets)


def test_connect_worker_running_the_task_killed(
    cluster: LocalStack, pipeline: Pipeline, tmp_path: Path
) -> None:
    """The worker running Debezium's task SIGKILLed: the task moves to the other worker and
    resumes from the slot; Debezium re-sends what it had not yet committed an offset for."""
    kills = scaled(1, 3)
    app = started_app(pipeline)
    run = CdcRun(app, tmp_path / "run.log")
    writer = Writer(app, rate=RATE, batch=10).start()
    workers = {w.url.removeprefix("http://"): w for w in cluster.connect_workers}
    started = time.monotonic()
    moves, recovered = [], []
    for _ in range(kills):
        time.sleep(scaled(8, 20))
        url = cluster.connect_workers[0].url
        eventually(
            lambda u=url: streaming_offset_committed(u, pipeline.name),
            what="an offset committed past the initial snapshot",
            timeout=180,
        )
        on = eventually(
            lambda: task_worker(cluster.connect_workers[0].url, pipeline.name),
            what="the task running",
        )
        victim = workers[on]
        survivor = next(w for addr, w in workers.items() if addr != on)
        t0 = time.monotonic()
        cluster.stop(victim.name, crash=True)
        moved = eventually(
            lambda s=survivor: task_worker(s.url, pipeline.name) == s.url.removeprefix("http://"),
            what=f"the task on {survivor.name}",
            timeout=180,
        )
        assert moved
        moves.append(
            {
                "killed": victim.name,
                "moved_to": survivor.name,
                "moved_s": round(time.monotonic() - t0, 1),
            }
        )
        recovered.append(probe(app, t0))
        assert run.alive(), run.tail()
        cluster.restart(victim.name)
    time.sleep(scaled(5, 20))
    found = finish(app, writer, [run], timeout=600)
    written = writer.committed + USERS + POSTS
    record(
        "cluster_connect_kill",
        task_moves=moves,
        seconds_to_recover_after_each_kill=recovered,
        **drill_figures(app, writer, found, [run.log]),
        minutes=round((time.monotonic() - started) / 60, 1),
    )
    assert written > 0
    assert count_log([run.log], "handler.dead_letter") == 0, run.tail()


def test_consumer_frozen_past_its_session(pipeline: Pipeline, tmp_path: Path) -> None:
    """Two consumers share the group; one is frozen (SIGSTOP) past its session timeout, the
    other takes its partitions; the frozen one is resumed (SIGCONT). It must not commit over
    its successor's offsets, and nothing it was in the middle of is applied twice."""
    freezes = scaled(1, 3)
    app = started_app(pipeline)
    writer = Writer(app, rate=RATE, batch=10).start()
    runs = [CdcRun(app, tmp_path / f"run{i}.log") for i in range(2)]

    started = time.monotonic()
    takeovers, recovered = [], []
    with OffsetWatch(app, PARTITIONS) as watch:
        for i in range(freezes):
            eventually(lambda: all(r.owned() > 0 for r in runs), what="two consumers sharing")
            time.sleep(scaled(6, 15))
            frozen, other = runs[i % 2], runs[(i + 1) % 2]
            t0 = time.monotonic()
            frozen.proc.send_signal(signal.SIGSTOP)
            try:
                eventually(
                    lambda o=other: all(
                        o.owned(workload) >= PARTITIONS * len(topics)
                        for workload, topics in app.workload_topics().items()
                    ),
                    what="the other consumer owning every partition of every workload",
                    timeout=120,
                )
                takeovers.append(round(time.monotonic() - t0, 1))
                recovered.append(probe(app, t0, runs=(other, frozen)))
                time.sleep(scaled(3, 10))  # the new owner commits past the frozen one
            finally:
                frozen.proc.send_signal(signal.SIGCONT)
            assert frozen.alive(), frozen.tail()
        time.sleep(scaled(8, 20))
        found = finish(app, writer, runs, timeout=600)
    logs = [r.log for r in runs]
    record(
        "cluster_consumer_frozen",
        freezes=freezes,
        seconds_until_partitions_moved=takeovers,
        seconds_to_recover_after_each_freeze=recovered,
        offsets_committed_backwards=len(watch.regressions),
        # The resumed consumer learns it was replaced: lost, not revoked, so it commits nothing.
        partitions_lost_by_the_frozen_consumer=count_log(logs, "partitions.lost"),
        **drill_figures(app, writer, found, logs),
        minutes=round((time.monotonic() - started) / 60, 1),
    )
    assert watch.regressions == [], watch.regressions[:10]


def handled(run: CdcRun) -> float:
    """Records the consumer has finished so far (every outcome)."""
    return run.metrics().get("cdc_records_total", 0.0)


def test_network_faults_between_the_consumer_and_the_brokers(
    cluster: LocalStack, pipeline: Pipeline, tmp_path: Path
) -> None:
    """The consumer reaches every broker through a relay (their PROXIED listener): 100 ms
    each way with 5% of segments lost, then cut off past its session. It rides both out;
    nothing is lost or applied twice. Only its traffic is faulted: Debezium, PostgreSQL and
    the handlers' database are not."""
    degraded_s, cut_s = scaled(30, 120), scaled(20, 60)
    app = started_app(pipeline)
    ports = cluster.state.ports
    routes = {ports[f"proxy-{n.name}"]: ports[f"{n.name}-proxied"] for n in cluster.kafka_nodes}
    bootstrap = ",".join(f"127.0.0.1:{port}" for port in routes)
    started = time.monotonic()
    phases: dict[str, dict[str, float]] = {}
    with FaultProxy(routes) as proxy:
        run = CdcRun(app, tmp_path / "run.log", CDC_KAFKA_BOOTSTRAP=bootstrap)
        writer = Writer(app, rate=RATE, batch=10).start()

        def phase(name: str, seconds: float) -> None:
            records, written, t0 = handled(run), writer.committed, time.monotonic()
            time.sleep(seconds)
            took = time.monotonic() - t0
            phases[name] = {
                "seconds": round(took, 1),
                "records_handled_per_s": round((handled(run) - records) / took, 1),
                "changes_written_per_s": round((writer.committed - written) / took, 1),
            }

        eventually(lambda: run.owned() > 0, what="the consumer owning partitions", timeout=120)
        probe(app, time.monotonic(), runs=(run,))
        phase("clear", scaled(10, 30))
        proxy.set(delay_s=0.1, loss=0.05)
        phase("delay_100ms_each_way_loss_5pct", degraded_s)
        under_faults = probe(app, time.monotonic(), runs=(run,))
        proxy.set(delay_s=0.0, loss=0.0, cut=True)
        phase("cut_off", cut_s)
        t0 = time.monotonic()
        proxy.set(cut=False)
        recovered = probe(app, t0, runs=(run,))
        phase("after", scaled(10, 30))
        assert run.alive(), run.tail()
        found = finish(app, writer, [run], timeout=600)
    record(
        "cluster_network_faults",
        phases=phases,
        seconds_for_a_change_under_delay_and_loss=under_faults,
        seconds_to_recover_after_the_cut=recovered,
        segments_lost_chunks=proxy.tally.chunks_lost,
        relayed_mb=round(proxy.tally.bytes / 1e6, 1),
        partitions_lost_in_the_cut=count_log([run.log], "partitions.lost"),
        **drill_figures(app, writer, found, [run.log]),
        minutes=round((time.monotonic() - started) / 60, 1),
    )
    assert phases["delay_100ms_each_way_loss_5pct"]["records_handled_per_s"] > 0
    assert phases["cut_off"]["records_handled_per_s"] < phases["clear"]["records_handled_per_s"]
    assert count_log([run.log], "handler.dead_letter") == 0, run.tail()

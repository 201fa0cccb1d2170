"""A debounced handler on the real stack: a row inserted, then updated 100 times in quick
succession, each update its own transaction. The handler (an index kept in a table) runs
twice: once with the insert, once with the last update, at least ``debounce_s`` after the
last update was written; the other 99 updates are coalesced into that run and counted so.
While the run is going no offset past the updates is committed; once it is done the group
commits past every one of them. A row updated every 0.25 s, never quiet, is run every
``max_wait_s`` while the updates go on."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc import Change, Context, Op, on_change
from cdc.routing import Router, handlers_of
from cdc.testing import RunningConsumer
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack

UPDATES = 100
DEBOUNCE_S = 2.0


class Index:
    """A table of posts and a debounced handler keeping an index of them in another table;
    each run noted with when it started. ``hold``: an update's run waits for `release`."""

    def __init__(self, p: Pipeline, debounce_s: float, max_wait_s: float, hold: bool) -> None:
        self.posts = posts = p.table("posts")
        self.index = index = p.table("post_index")
        p.sql(f"CREATE TABLE {posts} (id int PRIMARY KEY, title text NOT NULL, version int)")
        p.sql(f"CREATE TABLE {index} (id int PRIMARY KEY, title text, version int)")
        p.write_file({posts: {}}, topic_partitions=3)
        p.apply()
        self.runs: list[tuple[float, Change]] = []
        lock = threading.Lock()
        self.running, self.release = threading.Event(), threading.Event()

        @on_change(f"public.{posts}", debounce_s=debounce_s, max_wait_s=max_wait_s)
        def index_post(change: Change, ctx: Context) -> None:
            with lock:
                self.runs.append((time.monotonic(), change))
            if hold and change.op is Op.UPDATE:
                self.running.set()
                self.release.wait(60)  # the test looks at the committed offsets meanwhile
            row = change.after
            assert row is not None
            with ctx.connection() as conn, conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {index} (id, title, version) VALUES (%s, %s, %s) ON CONFLICT "
                    "(id) DO UPDATE SET title = excluded.title, version = excluded.version",
                    (row["id"], row["title"], row["version"]),
                )

        (self.handler,) = handlers_of(index_post)
        watched = p.watched()
        settings = p.stack.settings(watched_tables=p.file, group_id=p.id, http_port=None)
        self.consumer = RunningConsumer(settings, watched, Router([self.handler], watched.tables))

    def update(self, p: Pipeline, version: int) -> None:
        p.sql(
            f"UPDATE {self.posts} SET title = %s, version = %s WHERE id = 1",
            (f"v{version}", version),
        )

    def coalesced(self) -> float | None:
        return self.consumer.runtime.metrics.registry.get_sample_value(
            "cdc_coalesced_total", {"handler": self.handler.name, "table": f"public.{self.posts}"}
        )


def test_a_hundred_quick_updates_of_one_row_make_one_run_with_the_last_row(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    ix = Index(p, DEBOUNCE_S, 60.0, hold=True)
    posts, runs = ix.posts, ix.runs
    group = Consumer({"bootstrap.servers": p.stack.kafka_bootstrap, "group.id": p.id})
    with ix.consumer as c:
        p.sql(f"INSERT INTO {posts} VALUES (1, 'v0', 0)")
        inserted = c.wait_for(posts, "c", timeout=120)
        tp = TopicPartition(p.topic(posts), inserted.partition)

        last_written = 0.0
        for version in range(1, UPDATES + 1):
            last_written = time.monotonic()  # before the update: it reaches us after this
            ix.update(p, version)
        assert ix.running.wait(60), "the debounced run never started"
        # The run holds every update: none finished, nothing committed past the first.
        time.sleep(2)  # more than the client's commit interval (1 s)
        assert not [h for h in c.handled if h.offset > inserted.offset]
        (committed,) = group.committed([tp], timeout=10)
        assert committed.offset <= inserted.offset + 1
        ix.release.set()

        c.wait_until(
            lambda _: sum(h.offset > inserted.offset for h in c.handled) >= UPDATES,
            "every update finished",
            timeout=60,
        )
        end = inserted.offset + 1 + UPDATES
        deadline = time.monotonic() + 15
        while (offset := group.committed([tp], timeout=10)[0].offset) < end:
            assert time.monotonic() < deadline, f"committed {offset}, not {end}"
            time.sleep(0.2)
        coalesced = ix.coalesced()
        updates = [h for h in c.handled if h.offset > inserted.offset]
    group.close()

    # Two runs: the insert, then the hundredth update alone, once the row was quiet.
    assert [(ch.op, ch.after["version"]) for _, ch in runs] == [  # type: ignore[index]
        (Op.CREATE, 0),
        (Op.UPDATE, UPDATES),
    ]
    assert runs[1][0] >= last_written + DEBOUNCE_S
    assert coalesced == UPDATES - 1
    # Each update is a record of its own, every one finished with that one run.
    assert sorted(h.offset for h in updates) == list(range(inserted.offset + 1, end))
    assert {id(h.runs[0]) for h in updates} == {id(updates[0].runs[0])}
    assert all(h.runs[0].outcome.value == "done" and not h.parked for h in updates)
    assert p.sql(f"SELECT id, title, version FROM {ix.index}") == [(1, f"v{UPDATES}", UPDATES)]


def test_a_row_that_never_goes_quiet_is_run_at_the_longest_wait(pipeline: Pipeline) -> None:
    p = pipeline
    ix = Index(p, debounce_s=1.5, max_wait_s=2.0, hold=False)
    with ix.consumer as c:
        p.sql(f"INSERT INTO {ix.posts} VALUES (1, 'v0', 0)")
        inserted = c.wait_for(ix.posts, "c", timeout=120)
        # An update every 0.25 s for 8 s: never 1.5 s quiet.
        versions = 32
        for version in range(1, versions + 1):
            ix.update(p, version)
            time.sleep(0.25)
        writing_ended = time.monotonic()
        c.wait_until(
            lambda _: sum(h.offset > inserted.offset for h in c.handled) >= versions,
            "every update finished",
            timeout=60,
        )
        coalesced = ix.coalesced()
    updates = [(t, ch.after["version"]) for t, ch in ix.runs if ch.op is Op.UPDATE]  # type: ignore[index]
    # Runs every 2 s or so while the updates went on, the last with the last update.
    assert updates[0][0] < writing_ended
    assert 2 <= len(updates) <= 8
    assert updates[-1][1] == versions
    assert [v for _, v in updates] == sorted(v for _, v in updates)
    assert coalesced == versions - len(updates)
    assert p.sql(f"SELECT version FROM {ix.index}") == [(versions,)]

"""A debounced handler on the real stack: a row inserted, then updated 100 times in quick
succession, each update its own transaction. The handler (an index kept in a table) runs
twice: once with the insert, once with the last update, at least ``debounce_s`` after the
last update was written; the other 99 updates are coalesced into that run and counted so.
While the run is going no offset past the updates is committed; once it is done the group
commits past every one of them."""

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


def test_a_hundred_quick_updates_of_one_row_make_one_run_with_the_last_row(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    posts = p.table("posts")
    index = p.table("post_index")
    p.sql(f"CREATE TABLE {posts} (id int PRIMARY KEY, title text NOT NULL, version int NOT NULL)")
    p.sql(f"CREATE TABLE {index} (id int PRIMARY KEY, title text, version int)")
    p.write_file({posts: {}}, topic_partitions=3)
    p.apply()
    runs: list[tuple[float, Change]] = []
    lock = threading.Lock()
    running, release = threading.Event(), threading.Event()

    @on_change(f"public.{posts}", debounce_s=DEBOUNCE_S, max_wait_s=60.0)
    def index_post(change: Change, ctx: Context) -> None:
        with lock:
            runs.append((time.monotonic(), change))
        if change.op is Op.UPDATE:
            running.set()
            release.wait(60)  # the test looks at the committed offsets meanwhile
        row = change.after
        assert row is not None
        with ctx.connection() as conn, conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {index} (id, title, version) VALUES (%s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET title = excluded.title, version = excluded.version",
                (row["id"], row["title"], row["version"]),
            )

    (handler,) = handlers_of(index_post)
    settings = p.stack.settings(watched_tables=p.file, group_id=p.id, http_port=None)
    watched = p.watched()
    group = Consumer({"bootstrap.servers": p.stack.kafka_bootstrap, "group.id": p.id})
    with RunningConsumer(settings, watched, Router([handler], watched.tables)) as c:
        p.sql(f"INSERT INTO {posts} VALUES (1, 'v0', 0)")
        inserted = c.wait_for(posts, "c", timeout=120)
        tp = TopicPartition(p.topic(posts), inserted.partition)

        last_written = 0.0
        for version in range(1, UPDATES + 1):
            last_written = time.monotonic()  # before the update: it reaches us after this
            p.sql(
                f"UPDATE {posts} SET title = %s, version = %s WHERE id = 1",
                (f"v{version}", version),
            )
        assert running.wait(60), "the debounced run never started"
        # The run holds every update: none finished, nothing committed past the first.
        time.sleep(2)  # more than the client's commit interval (1 s)
        assert not [h for h in c.handled if h.offset > inserted.offset]
        (committed,) = group.committed([tp], timeout=10)
        assert committed.offset <= inserted.offset + 1
        release.set()

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
        coalesced = c.runtime.metrics.registry.get_sample_value(
            "cdc_coalesced_total", {"handler": handler.name, "table": f"public.{posts}"}
        )
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
    assert p.sql(f"SELECT id, title, version FROM {index}") == [(1, f"v{UPDATES}", UPDATES)]

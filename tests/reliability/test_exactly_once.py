"""Duplicates at the source: Kafka Connect SIGKILLed while Debezium captures a steady stream of
inserts, on a stack of its own, with the connector's exactly-once source delivery off and on.

Off, the worker's offsets (flushed every second) lag the records it wrote, so the task that
starts again re-sends what came after the last flush: changes arrive twice. On (KIP-618:
records and offsets in one transaction per poll), a read-committed consumer sees each change
once. Either way none is lost."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from cdc.connect import ConnectClient
from cdc.testing import RecordReader
from tests.integration.conftest import Pipeline, private_cluster
from tests.reliability.report import record, scaled
from tests.reliability.workload import task_running
from tests.waiting import eventually

pytestmark = [pytest.mark.stack, pytest.mark.reliability]


@pytest.mark.parametrize("exactly_once", [False, True], ids=["off", "on"])
def test_a_connect_crash_sends_changes_twice_unless_exactly_once(
    exactly_once: bool, tmp_path: Path
) -> None:
    with private_cluster("cdc-eos-", 1, 1, exactly_once) as stack:
        p = Pipeline(stack.endpoints(), tmp_path)
        items = p.table("items")
        p.sql(f"CREATE TABLE {items} (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
        p.write_file({items: {}}, exactly_once=exactly_once)
        p.apply()
        connect = ConnectClient(p.stack.connect_url)
        eventually(lambda: task_running(connect, p.name), what="the task")
        seconds, rate = scaled(20, 60), 100
        done = threading.Event()

        def write() -> None:  # one insert a transaction, `rate` a second
            while not done.wait(1 / rate):
                p.sql(f"INSERT INTO {items} DEFAULT VALUES")

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(seconds / 2)
        killed = time.monotonic()
        stack.restart("connect", crash=True)  # mid-stream, between two offset flushes
        eventually(lambda: task_running(connect, p.name), what="the task after the crash")
        recovered_s = round(time.monotonic() - killed, 1)
        time.sleep(seconds / 2)
        done.set()
        writer.join()
        ((written,),) = p.sql(f"SELECT count(*) FROM {items}")

        def ids(records: list[object]) -> Counter[int]:
            found: Counter[int] = Counter()
            for r in records:
                value = r.value()  # type: ignore[attr-defined]
                if value:
                    found[json.loads(value)["payload"]["after"]["id"]] += 1
            return found

        found: Counter[int] = Counter()
        parsed = [0]

        def all_read(records: list[object]) -> bool:
            # Only the records new since the last call: parsing every record at each poll
            # read a backlog (a worker back after its crash's transaction timed out) too
            # slowly to finish within the wait.
            found.update(ids(records[parsed[0] :]))
            parsed[0] = len(records)
            return len(found) >= written

        with RecordReader(p.stack.kafka_bootstrap, [p.topic(items)]) as reader:
            reader.wait(all_read, timeout=180)
            time.sleep(3)  # anything sent twice after the last first copy
            reader.wait(lambda rs: True, timeout=1)
            seen = ids(reader.records)
        twice = sum(n - 1 for n in seen.values())
        record(
            f"connect_crash_exactly_once_{'on' if exactly_once else 'off'}",
            changes_written=written,
            changes_captured=len(seen),
            lost=written - len(seen),
            sent_twice=twice,
            task_back_after_s=recovered_s,
        )
        print(f"exactly once {exactly_once}: {written} written, {twice} sent twice")
        assert len(seen) == written  # nothing lost
        if exactly_once:
            assert twice == 0, f"{twice} changes sent twice with exactly-once delivery"

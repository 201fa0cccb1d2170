"""A broker's disk fills up while changes are captured and handled: a Kafka node's directory is
a small filesystem of its own (a tmpfs), filled with a file until the broker can no longer
write and stops; then the file is removed and the broker started again. Alone, capture and
consumption stop and then resume; in a cluster of three (two replicas in sync required) they
go on without it, and it catches up. Either way every change is applied exactly once (the
ledger skipping what comes again): nothing lost, nothing applied twice."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cdc.connect import ConnectClient
from cdc.stack.local import LocalStack
from tests.integration.conftest import Pipeline
from tests.integration.test_kill import start
from tests.reliability.report import record, scaled
from tests.reliability.workload import count_log, task_running
from tests.waiting import eventually

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

HANDLERS = """
from cdc import Change, Context, on_change


@on_change("public.{items}", ledger=True)
def apply(change: Change, ctx: Context) -> None:
    with ctx.connection() as conn:  # once per change: the ledger row is in this transaction
        conn.execute("INSERT INTO {applied} (id, v) VALUES (%s, %s)",
                     (change.row["id"], change.row["v"]))
"""


@contextmanager
def stack_on_a_small_disk(
    size_mb: int, node: str, brokers: int
) -> Iterator[tuple[LocalStack, Path]]:
    """A stack of ``brokers`` (with two Connect workers when more than one) whose Kafka node
    ``node`` keeps its data on a tmpfs of ``size_mb``."""
    stack = LocalStack(Path(tempfile.mkdtemp(prefix="cdc-disk-")))
    disk = stack.dir / node
    disk.mkdir(parents=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(disk)]
    subprocess.run(mount, check=True)
    try:
        stack.up(timeout=600.0, brokers=brokers, connect_workers=1 if brokers == 1 else 2)
        yield stack, disk
    finally:
        stack.destroy()
        subprocess.run(["umount", "-l", str(disk)], check=False)
        shutil.rmtree(stack.dir, ignore_errors=True)


def fill(disk: Path) -> Path:
    """A file taking every free byte of ``disk``."""
    filler = disk / "filler"
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True, check=False
    )
    return filler


@pytest.mark.parametrize(
    ("brokers", "node"), [(1, "kafka"), (3, "kafka-3")], ids=["single-node", "cluster"]
)
def test_a_broker_whose_disk_fills_stops_and_after_it_is_freed_nothing_is_lost(
    tmp_path: Path, brokers: int, node: str
) -> None:
    with stack_on_a_small_disk(256, node, brokers) as (stack, disk):
        p = Pipeline(stack.endpoints(), tmp_path)
        items, applied = p.table("items"), p.table("applied")
        p.sql(f"CREATE TABLE {items} (id int PRIMARY KEY, v int NOT NULL)")
        p.sql(f"CREATE TABLE {applied} (id int, v int)")
        p.write_file({items: {}})
        p.apply()
        module = f"disk_{p.id}"
        source = HANDLERS.format(items=items, applied=applied)
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        log = tmp_path / "consumer.log"
        consumer = start(p, log, module, tmp_path)
        connect = ConnectClient(p.stack.connect_url)
        eventually(lambda: task_running(connect, p.name), what="the task")
        done, written = threading.Event(), [0]

        def write() -> None:  # an insert and an update a transaction, 50 a second
            i = 0
            while not done.wait(0.02):
                i += 1
                p.sql(f"INSERT INTO {items} VALUES ({i}, 1)")
                p.sql(f"UPDATE {items} SET v = 2 WHERE id = {i}")
                written[0] = 2 * i

        writer = threading.Thread(target=write, daemon=True)
        try:
            writer.start()
            time.sleep(scaled(10, 30))
            filled = time.monotonic()
            filler = fill(disk)
            # The broker cannot write its log any more: it stops (a failed log directory).
            eventually(lambda: not stack.procs.alive(node), what="the broker stopped", timeout=120)
            stopped_s = round(time.monotonic() - filled, 1)
            applied_while_down = p.sql(f"SELECT count(*) FROM {applied}")[0][0]
            broker_log = stack.procs.log_file(node).read_text(errors="replace")
            assert "No space left on device" in broker_log, broker_log[-3000:]
            # A cluster goes on without the node once the controller has given its partitions
            # other leaders (it halted: no clean hand-over, so after the broker session).
            down_s = 10 if brokers == 1 else 30
            time.sleep(down_s)
            applied_while_down = p.sql(f"SELECT count(*) FROM {applied}")[0][0] - applied_while_down
            filler.unlink()
            freed = time.monotonic()
            stack.up(timeout=300.0)
            eventually(lambda: task_running(connect, p.name), what="the task", timeout=180)
            time.sleep(scaled(10, 30))
        finally:
            done.set()
            writer.join()
        total = written[0]
        try:
            changes = eventually(
                lambda: p.sql(f"SELECT count(*) FROM {applied}")[0][0],
                lambda n: n >= total,
                what="every change applied",
                timeout=300,
            )
            recovered_s = round(time.monotonic() - freed, 1)
            time.sleep(3)  # anything applied twice would show by now
            ((final,),) = p.sql(f"SELECT count(*) FROM {applied}")
            ((distinct,),) = p.sql(
                f"SELECT count(*) FROM (SELECT DISTINCT id, v FROM {applied}) AS d"
            )
        finally:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(timeout=60)
        text = log.read_text()
        record(
            f"disk_full_{brokers}_brokers",
            changes_written=total,
            broker_down_s=down_s,
            changes_applied_while_the_broker_was_down=applied_while_down,
            changes_applied=final,
            lost=total - distinct,
            applied_twice=final - distinct,
            broker_stopped_after_s=stopped_s,
            all_applied_after_freed_s=recovered_s,
            redeliveries_skipped_by_ledger=count_log([log], "handler.duplicate"),
        )
        assert changes >= total
        assert distinct == total, text[-3000:]  # nothing lost
        assert final == distinct  # nothing applied twice
        if brokers > 1:
            assert applied_while_down > 0, text[-3000:]

"""In-flight work: the commit position never passes an unfinished record; records of one key
run in order, one at a time, while other keys run beside them."""

from __future__ import annotations

import threading
import time

from cdc.runtime.work import KeyedWorkers, PartitionWork


def test_position_is_one_past_the_finished_prefix() -> None:
    work = PartitionWork("t", 0)
    for offset in (10, 11, 12, 13):
        work.add(offset)
    assert work.to_store() is None
    work.finish(12)
    work.finish(13)
    assert work.position is None  # 10 is not finished: nothing may be committed
    assert work.in_flight == 4
    work.finish(10)
    assert work.to_store() == 11
    assert work.to_store() is None  # unchanged since the last call
    work.finish(11)
    assert work.to_store() == 14
    assert work.in_flight == 0


def test_a_skipped_record_moves_the_position_only_past_a_finished_prefix() -> None:
    work = PartitionWork("t", 0)
    work.skip(5)
    assert work.position == 6
    work.add(6)
    work.skip(7)  # behind 6, which is not finished
    assert (work.position, work.in_flight) == (6, 2)
    work.finish(6)
    assert (work.position, work.in_flight) == (8, 0)
    work.skip(8)
    assert work.position == 9


def test_abandoned_work_does_not_start_and_quiesce_waits_for_running() -> None:
    work = PartitionWork("t", 0)
    assert work.begin()
    done = threading.Event()

    def finish_later() -> None:
        time.sleep(0.2)
        work.end()
        done.set()

    threading.Thread(target=finish_later).start()
    work.give_up()
    assert not work.begin()  # new work is refused once abandoned
    assert work.hurry.is_set()
    assert work.quiesce(5)
    assert done.is_set()


def test_same_key_in_order_other_keys_concurrently() -> None:
    workers = KeyedWorkers(4)
    lock = threading.Lock()
    seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    running: dict[str, int] = {"a": 0, "b": 0, "c": 0}
    overlap = {"same_key": 0}
    active = {"n": 0, "most": 0}

    def task(key: str, i: int) -> None:
        with lock:
            running[key] += 1
            overlap["same_key"] = max(overlap["same_key"], running[key])
            active["n"] += 1
            active["most"] = max(active["most"], active["n"])
        time.sleep(0.01)
        with lock:
            seen[key].append(i)
            running[key] -= 1
            active["n"] -= 1

    for i in range(20):
        # One fetch's worth at a time, as the consumer submits them.
        workers.submit([(key, lambda k=key, n=i: task(k, n)) for key in seen])  # type: ignore[misc]
    assert workers.wait_idle(30)
    workers.close()
    assert all(order == list(range(20)) for order in seen.values())
    assert overlap["same_key"] == 1  # never two records of one key at once
    assert active["most"] > 1  # different keys did run side by side


def test_a_failing_task_does_not_stop_its_worker() -> None:
    workers = KeyedWorkers(1)
    ran = []

    def boom() -> None:
        raise ValueError("bug")

    workers.submit([("k", boom), ("k", lambda: ran.append(1))])
    assert workers.wait_idle(5)
    workers.close()
    assert ran == [1]


def test_the_oldest_unfinished_record_is_the_head_of_the_pending() -> None:
    work = PartitionWork("t", 0)
    assert work.oldest_ms is None
    work.add(10, 1000)
    work.skip(11, 2000)  # finished at once, behind an unfinished one
    work.add(12, 3000)
    assert work.oldest_ms == 1000
    work.finish(12)
    assert work.oldest_ms == 1000
    work.finish(10)  # 10 and 11 leave; 12 was finished too
    assert work.oldest_ms is None
    assert work.position == 13

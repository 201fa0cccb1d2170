"""Which decoded records reach handlers, on the corpus: by default streaming changes and
truncates do; snapshot reads, tombstones, heartbeats and transaction records are held back
and counted."""

from __future__ import annotations

from collections import Counter

from cdc import Kind
from cdc.events import Delivery, DeliveryGate
from tests.corpus.load import decode, decoder, records

TABLE = "corpus.all_types"


def run_gate(gate: DeliveryGate) -> Counter[Kind]:
    dec = decoder("json")
    admitted: Counter[Kind] = Counter()
    for r in records("json"):
        event = decode(dec, r)
        if gate.admit(event):
            admitted[event.kind] += 1
    return admitted


def test_defaults() -> None:
    gate = DeliveryGate()
    assert run_gate(gate) == {Kind.CHANGE: 5, Kind.TRUNCATE: 1, Kind.EVENT: 2}
    assert gate.held_back == {
        (Kind.SNAPSHOT_READ, TABLE): 4,
        (Kind.TOMBSTONE, TABLE): 1,
        (Kind.HEARTBEAT, ""): 3,
        (Kind.TRANSACTION, ""): 12,
        (Kind.MESSAGE, ""): 1,
    }


def test_a_table_that_asks_for_snapshot_reads_and_tombstones() -> None:
    gate = DeliveryGate(
        {TABLE: Delivery(snapshot_reads=True, tombstones=True, truncates=False)},
        messages=True,
    )
    admitted = run_gate(gate)
    assert admitted == {
        Kind.CHANGE: 5,
        Kind.SNAPSHOT_READ: 4,
        Kind.TOMBSTONE: 1,
        Kind.MESSAGE: 1,
        Kind.EVENT: 2,
    }
    assert gate.held_back[Kind.TRUNCATE, TABLE] == 1


def test_other_tables_keep_the_default() -> None:
    gate = DeliveryGate({"public.other": Delivery(snapshot_reads=True)})
    assert Kind.SNAPSHOT_READ not in run_gate(gate)
    assert gate.held_back[Kind.SNAPSHOT_READ, TABLE] == 4


def test_a_read_known_before_decoding_is_judged_and_counted_the_same() -> None:
    gate = DeliveryGate({TABLE: Delivery(snapshot_reads=True)})
    assert gate.admits(Kind.SNAPSHOT_READ, TABLE)
    assert not gate.admits(Kind.SNAPSHOT_READ, "public.other")
    assert gate.held_back == {(Kind.SNAPSHOT_READ, "public.other"): 1}

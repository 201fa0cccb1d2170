"""Keys held behind a dead letter: what holds, what releases, and the runtime parking a
key's later changes behind its first dead letter, unrun, while other keys run."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from cdc import Change, Context, DeadLetter, on_change
from cdc.events.source import KafkaCoordinates
from cdc.runtime import Runtime
from cdc.runtime.held_keys import HeldKeys
from tests.unit.test_pipeline import corpus_messages, run


def at(topic: str, key: bytes | None) -> KafkaCoordinates:
    return KafkaCoordinates(topic, 0, 0, key=key)


def test_a_park_holds_its_handler_topic_and_key_only() -> None:
    held = HeldKeys()
    held.parked("h", "t", b"k", 0, 10, "boom")
    assert held.hold("h", at("t", b"k")) is not None
    assert held.hold("other", at("t", b"k")) is None
    assert held.hold("h", at("t", b"k2")) is None
    assert held.hold("h", at("t2", b"k")) is None
    assert held.hold("h", at("t", None)) is None
    held.parked("h", "t", None, 0, 11, "no key")  # nothing to order: holds nothing
    assert len(held) == 1


def test_a_park_for_no_one_handler_holds_nothing() -> None:
    held = HeldKeys()
    held.parked("", "t", b"k", 0, 3, "undecodable")
    assert held.hold("a", at("t", b"k")) is None
    assert len(held) == 0


def test_a_release_lets_go_only_of_parks_its_replay_read() -> None:
    held = HeldKeys()
    held.parked("h", "t", b"k", 0, 10, "boom")
    held.parked("h", "t", b"k", 0, 12, "behind")
    hold = held.hold("h", at("t", b"k"))
    assert hold is not None
    assert (hold.first, hold.last, hold.count) == (10, 12, 2)
    assert not held.released("h", "t", b"k", up_to=11)  # parked again after the replay read
    assert held.hold("h", at("t", b"k")) is not None
    assert held.released("h", "t", b"k", up_to=12)
    assert held.hold("h", at("t", b"k")) is None
    held.parked("h", "t", b"k", 0, 12, "behind")  # read again late: replayed already
    assert held.hold("h", at("t", b"k")) is None
    held.parked("h", "t", b"k", 0, 13, "new")
    assert held.hold("h", at("t", b"k")) is not None


def mirrored(keep_order: bool) -> tuple[bytes, list[bytes], list[tuple[Any, ...]], Runtime, Any]:
    """A handler that refuses every change of one key (one with several changes): the key,
    the keys it ran for, in order, what was parked and the runtime and client after."""
    messages = [m for m in corpus_messages() if m.value() and m.key()]
    keys = Counter(m.key() for m in messages)
    failing = next(k for k, n in keys.items() if n >= 3 and k is not None)
    ran: list[bytes] = []

    @on_change("corpus.all_types", keep_order=keep_order)
    def mirror(change: Change, ctx: Context) -> DeadLetter | None:
        key = change.kafka.key if change.kafka else None
        assert key is not None
        ran.append(key)
        return DeadLetter("the sink refused it") if key == failing else None

    offsets = itertools.count()
    parked: list[tuple[Any, ...]] = []

    def spy(runtime: Runtime) -> None:
        def send(rejected: Any) -> tuple[int, int]:
            parked.append((rejected.key, rejected.error, rejected.reason))
            return 0, next(offsets)

        runtime.parker.sink.send = send  # type: ignore[method-assign]

    runtime, kafka, _ = run([messages], mirror, spy)
    assert kafka.stored[-1][2] == int(messages[-1].offset() or 0) + 1  # nothing waits
    return failing, ran, parked, runtime, kafka


def test_a_keys_later_changes_are_parked_behind_its_dead_letter_unrun() -> None:
    failing, every, _, _, _ = mirrored(keep_order=False)
    changes = every.count(failing)
    assert changes >= 2
    failing, ran, parked, runtime, _ = mirrored(keep_order=True)
    assert ran.count(failing) == 1  # the first; the others never reached the handler
    assert [p[:2] for p in parked] == [(failing, "DeadLetter")] + [(failing, "ParkedBehind")] * (
        changes - 1
    )
    assert "cdc dlq replay" in parked[1][2]
    assert sorted(k for k in ran if k != failing) == sorted(k for k in every if k != failing)
    assert runtime.metrics.registry.get_sample_value("cdc_held_keys") == 1


def test_a_handler_may_let_later_changes_run() -> None:
    failing, ran, parked, runtime, _ = mirrored(keep_order=False)
    assert ran.count(failing) == len(parked) >= 2
    assert {p[1] for p in parked} == {"DeadLetter"}
    assert runtime.metrics.registry.get_sample_value("cdc_held_keys") == 1  # held, not heeded

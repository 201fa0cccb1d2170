"""Keys held behind a dead letter, so a key's changes reach a handler in order even when one
of them fails.

Once a change of key K from topic T is parked for handler H, H's later changes of K are
parked behind it without running, until `cdc dlq replay` has replayed them all, in order, and
appended a release for (H, T, K). A record parked for no one handler holds nothing: it could
not be decoded (what it was is unknown, often not a change at all) or met a fault of ours.
Records without a key hold nothing either: they have no order to keep.

The dead-letter topic itself is the record of what is held: a consumer folds it (parks and
releases, `DeadLetterTail`) and its own parks as it makes them. A release undoes only the
parks it saw: it names the last offset the replay read (``up_to``), and a key parked again
after that stays held."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cdc.events.source import KafkaCoordinates

Slot = tuple[str, str, bytes]  # handler, source topic, key


class ParkedBehind(Exception):
    """A change not run: its key is held for the handler behind an earlier dead letter."""


@dataclass
class Hold:
    """A held key: where its first park is, the last one, and how many wait."""

    partition: int  # in the dead-letter topic: a key's records all land in one
    first: int
    last: int
    count: int
    reason: str  # the first park's

    def behind(self, handler: str) -> str:
        """The reason given to a change parked behind this hold."""
        return (
            f"parked behind the dead letter of its key for {handler} "
            f"(dead-letter partition {self.partition} offset {self.first}: {self.reason[:200]})"
            f"; `cdc dlq replay` replays them in order and releases the key"
        )


class HeldKeys:
    """Which (handler, topic, key) are held; read and changed from any thread."""

    def __init__(self) -> None:
        # Read without the lock on the hot path: a dict read is atomic, and an empty dict is
        # the common case, costing one truthiness test.
        self.slots: dict[Slot, Hold] = {}
        # How far each slot was released: a park at or below that, folded late, was replayed.
        self._released: dict[Slot, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.slots)

    def hold(self, handler: str, kafka: KafkaCoordinates | None) -> Hold | None:
        """The hold that keeps ``handler`` from a change read at ``kafka``, if any."""
        key = None if kafka is None else kafka.key
        if key is None:
            return None
        return self.slots.get((handler, kafka.topic, key))  # type: ignore[union-attr]

    def parked(
        self, handler: str, topic: str, key: bytes | None, partition: int, offset: int, reason: str
    ) -> None:
        """A record parked for ``handler`` at ``partition``/``offset`` of the dead-letter
        topic (our own, or read back from the topic: folding one twice changes nothing)."""
        if key is None or not handler:
            return
        slot = (handler, topic, key)
        with self._lock:
            if offset <= self._released.get(slot, -1):
                return
            held = self.slots.get(slot)
            if held is None:
                self.slots[slot] = Hold(partition, offset, offset, 1, reason)
            elif offset > held.last:
                held.last = offset
                held.count += 1
            elif offset < held.first:
                held.first, held.reason = offset, reason
                held.count += 1

    def released(self, handler: str, topic: str, key: bytes | None, up_to: int) -> bool:
        """A replay released the key having read up to ``up_to``: let it go unless a park
        came after that. Whether it was let go."""
        if key is None:
            return False
        slot = (handler, topic, key)
        with self._lock:
            self._released[slot] = max(up_to, self._released.get(slot, -1))
            held = self.slots.get(slot)
            if held is None or held.last > up_to:
                return False
            del self.slots[slot]
            return True

    def snapshot(self) -> dict[Slot, Hold]:
        with self._lock:
            return {s: Hold(**vars(h)) for s, h in self.slots.items()}

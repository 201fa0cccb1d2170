"""The dead-letter topic read from its beginning, and on as it grows, into `HeldKeys`: the
parks and releases every consumer and every replay wrote. The previous owner of a partition
parked and committed, and its parks are in the topic: so a consumer reads it up to its end
before running a handler on a partition it was given (`TopicTail`)."""

from __future__ import annotations

from confluent_kafka import Message

from cdc.runtime.dead_letter import Parked
from cdc.runtime.held_keys import HeldKeys
from cdc.runtime.topic_tail import TopicTail
from cdc.settings import Settings
from cdc.tables.limits import RecordLimits


class DeadLetterTail(TopicTail):
    """Folds ``topic`` into ``held``, keeping what concerns ``handlers``."""

    kind = "dead_letters"
    why = "held keys are read from the dead-letter topic before any handler runs"

    def __init__(
        self,
        settings: Settings,
        topic: str,
        held: HeldKeys,
        handlers: frozenset[str],
        limits: RecordLimits,
    ) -> None:
        super().__init__(settings, topic, limits)
        self.held = held
        self._handlers = handlers

    def _fold(self, msg: Message) -> None:
        fold(self.held, Parked.of(msg), self._handlers)


def fold(held: HeldKeys, parked: Parked, handlers: frozenset[str] | None = None) -> None:
    """One dead-letter record into ``held``: a park or a release (``handlers``: only what
    concerns these)."""
    handler = parked.handler
    if handlers is not None and handler not in handlers:
        return
    if parked.release is not None:
        held.released(handler, parked.topic, parked.key, parked.release)
    elif parked.error != "Skipped":  # skipped on purpose: the key's later changes go on
        held.parked(
            handler, parked.topic, parked.key, parked.partition, parked.offset, parked.reason
        )

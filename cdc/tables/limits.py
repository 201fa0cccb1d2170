"""How large one change may be, end to end. One setting, ``connector.max_record_bytes`` in
the watched-tables file, becomes every Kafka limit on the way: Debezium's producer, the
topics it writes, our consumer's fetches and our dead-letter producer and topic.

Kafka's defaults stop at about 1 MB, and a change over that failed Debezium's task for good
(``RecordTooLargeException``), stopping the capture of every table."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 32 * MIB
# A parked record may be twice this (see `parked`); the broker takes no request over its
# socket.request.max.bytes, 100 MiB by default.
LARGEST_MAX_RECORD_BYTES = 48 * MIB
# Kafka's Java producer defaults: what a smaller limit must not lower.
_BUFFER_MEMORY = 32 * MIB
# librdkafka's consumer defaults; receive.message.max.bytes must exceed fetch.max.bytes by 512.
_FETCH_MAX_BYTES = 52_428_800
_RECEIVE_MAX_BYTES = 100_000_000
COMPRESSION = "lz4"


@dataclass(frozen=True)
class RecordLimits:
    """``record``: the largest change record (key, value and headers, uncompressed) as
    Debezium's producer measures it against ``max.request.size``."""

    record: int = DEFAULT_MAX_RECORD_BYTES

    @property
    def topic(self) -> int:
        """A topic's ``max.message.bytes``: the broker checks the compressed batch, and data
        that does not compress (a bytea of random bytes) grows a little under lz4."""
        return self.record + self.record // 32

    @property
    def parked(self) -> int:
        """A record in the dead-letter topic: the original, its key once more as a header,
        and our headers. Our producer's ``message.max.bytes`` and that topic's limit."""
        return 2 * self.record

    def connector(self) -> dict[str, str]:
        """Debezium's producer and the topics Kafka Connect creates for it."""
        return {
            "producer.override.max.request.size": str(self.record),
            # The producer refuses a record larger than its whole buffer.
            "producer.override.buffer.memory": str(max(_BUFFER_MEMORY, 2 * self.record)),
            # Text rows shrink a lot; the broker stores the batches as they come.
            "producer.override.compression.type": COMPRESSION,
            "topic.creation.default.max.message.bytes": str(self.topic),
        }

    def consumer(self, largest: int) -> dict[str, object]:
        """librdkafka consumer properties to read records of up to ``largest`` bytes (a
        partition's fetch returns at least one whole batch, whatever its size)."""
        fetch = max(_FETCH_MAX_BYTES, largest)
        return {
            "fetch.max.bytes": fetch,
            "receive.message.max.bytes": max(_RECEIVE_MAX_BYTES, fetch + 512),
        }

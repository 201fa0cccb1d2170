"""What every decoder does around its encoding: key then value, tombstones, and one error
type carrying the record's coordinates whatever went wrong."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from confluent_kafka import Message

from cdc.decoding.envelope import build_domain_event, build_event
from cdc.errors import DecodeError, RegistryError
from cdc.events.change import Event
from cdc.events.columns import Mismatch
from cdc.events.source import KafkaCoordinates


def coordinates(msg: Message, key: bytes | None = None) -> KafkaCoordinates:
    timestamp_type, timestamp = msg.timestamp()
    partition, offset, headers = msg.partition(), msg.offset(), msg.headers()
    return KafkaCoordinates(
        msg.topic() or "",
        -1 if partition is None else partition,
        -1 if offset is None else offset,
        timestamp if timestamp_type else None,
        tuple(headers) if headers else (),  # type: ignore[arg-type]  # bytes values
        key,
    )


class Decoder(ABC):
    """Kafka bytes -> `Event`. Raises `DecodeError` for a bad record, `RegistryError` when
    the schema registry is unreachable, and nothing else."""

    raw = False  # True when values arrive without a schema, as Debezium encoded them

    def decode(
        self,
        key: bytes | None,
        value: bytes | None,
        kafka: KafkaCoordinates,
        *,
        outbox: bool = False,
    ) -> Event:
        """``outbox``: the record is a domain event the Outbox Event Router wrote. A change's
        key is read when first asked for (`read_key`)."""
        part = "value"
        try:
            if outbox:
                part = "key"
                key_data = None if key is None else self._read(key)[0]
                part = "value"
                value_data = None if value is None else self._read(value)[0]
                return build_domain_event(value_data, key_data, kafka, raw=self.raw)
            if value is None:
                part = "key"
                return build_event(None, None, key, kafka, self, raw=self.raw)
            value_data, schema_name = self._read(value)
            if value_data is None:
                # Only a null record is a tombstone; a value that reads as null is not one.
                raise Mismatch("", "the value reads as null: not a change, and not a tombstone")
            return build_event(value_data, schema_name, key, kafka, self, raw=self.raw)
        except (DecodeError, RegistryError):
            raise
        except Exception as exc:  # any other failure is still this record's fault
            raise self._failed(exc, kafka, part) from _cause(exc)

    def read_key(self, raw: bytes, kafka: KafkaCoordinates) -> dict[str, Any] | None:
        """A record's key: its columns as values; `DecodeError` (part ``key``) if it cannot
        be read."""
        try:
            key = self._read(raw)[0]
            if key is not None and type(key) is not dict:
                raise Mismatch("key", f"expected an object, got {type(key).__name__}")
            return key
        except (DecodeError, RegistryError):
            raise
        except Exception as exc:
            raise self._failed(exc, kafka, "key") from _cause(exc)

    def peek_op(self, value: bytes) -> str | None:
        """The change's ``op`` if it can be read without decoding, else None."""
        return None

    def decode_message(self, msg: Message, *, outbox: bool = False) -> Event:
        key = msg.key()
        return self.decode(key, msg.value(), coordinates(msg, key), outbox=outbox)

    def _read(self, raw: bytes) -> tuple[Any, str | None]:
        if not raw:
            raise Mismatch("", "empty (0 bytes): not a change, and not a tombstone")
        return self.read(raw)

    @abstractmethod
    def read(self, raw: bytes) -> tuple[Any, str | None]:
        """The data in `raw`, checked and converted, and its schema's name if it has one."""

    @classmethod
    def _failed(cls, exc: Exception, kafka: KafkaCoordinates, part: str) -> DecodeError:
        """The `DecodeError` of whatever reading the record raised."""
        if isinstance(exc, Mismatch):
            return cls._error(str(exc) if exc.path else exc.reason, kafka, part)
        if isinstance(exc, RecursionError):
            return cls._error("nested too deeply", kafka, part)
        return cls._error(f"{type(exc).__name__}: {str(exc)[:300]}", kafka, part)

    @staticmethod
    def _error(reason: str, kafka: KafkaCoordinates, part: str) -> DecodeError:
        return DecodeError(
            reason, topic=kafka.topic, partition=kafka.partition, offset=kafka.offset, part=part
        )


def _cause(exc: Exception) -> Exception | None:
    """What a `DecodeError` is chained to: nothing for the failures it describes in full."""
    return None if isinstance(exc, Mismatch | RecursionError) else exc

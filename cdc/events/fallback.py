"""The typed stand-in for a valid PostgreSQL value that cannot arrive as its Python type."""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema


class Unrepresentable:
    """A valid PostgreSQL value that the Python type of its column cannot hold, or that Debezium
    could not carry: a BC or post-9999 date or timestamp, `time '24:00:00'`, an interval past
    `timedelta`'s range, a multi-dimensional array. Never a wrong value in its place.

    `pg_type` names the kind of column (`date`, `time`, `timestamp`, `timestamptz`,
    `interval`, `array`); `text` is the value in ISO 8601 (years with a sign beyond 0001..9999,
    counted astronomically: 1 BC is year 0) or None when Debezium sent nothing usable; `raw`
    is what Debezium sent. Row models accept it only where a field is declared
    `T | Unrepresentable`."""

    __slots__ = ("pg_type", "raw", "text")

    def __init__(self, pg_type: str, text: str | None, raw: Any) -> None:
        self.pg_type = pg_type
        self.text = text
        self.raw = raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unrepresentable) and (
            (self.pg_type, self.text, self.raw) == (other.pg_type, other.text, other.raw)
        )

    def __hash__(self) -> int:
        return hash((self.pg_type, self.text, repr(self.raw)))

    def __repr__(self) -> str:
        return f"Unrepresentable({self.pg_type!r}, {self.text!r}, raw={self.raw!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.is_instance_schema(
            cls,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.text if v.text is not None else repr(v.raw)
            ),
        )

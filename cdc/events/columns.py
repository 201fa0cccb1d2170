"""A row's columns as Debezium sent them, each converted to its Python value on first read."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from cdc.errors import DecodeError
from cdc.events.values import UNAVAILABLE, is_placeholder

if TYPE_CHECKING:
    from cdc.events.source import KafkaCoordinates

Convert = Callable[[Any], Any]


class Mismatch(ValueError):
    """A value does not match its schema; `path` says where."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path or '<root>'}: {reason}")

    def under(self, name: str) -> Mismatch:
        return Mismatch(f"{name}.{self.path}" if self.path else name, self.reason)


# One column of a row schema: the exact types whose values pass as they are (None among them
# for an optional column), and the conversion of any other value (it checks as it converts).
Column = tuple[frozenset[type], Convert]
# A row schema's columns, in schema order; built once per schema and shared by its rows.
Plan = dict[str, Column]
# A plan for rows without a schema that may hold TOAST stand-ins (see `Columns`).
TOASTED: Final[Plan] = {}


class Columns(Mapping[str, Any]):
    """The `before` or `after` of a change: ``row["email"]``, ``row.email``, ``row.get``,
    iteration, ``to_dict()``. A column's value is checked against the schema and converted
    (Decimal, datetime, UUID, timedelta...) the first time it is read, then kept; a value
    that contradicts its schema raises `DecodeError` naming the record and the column.

    Without a schema (`json-noschema`) the values are Debezium's raw encodings; a row model
    converts them."""

    __slots__ = ("_kafka", "_plan", "_raw", "_read", "_side")

    def __init__(
        self,
        raw: dict[str, Any],
        plan: Plan | None = None,
        side: str = "after",
        kafka: KafkaCoordinates | None = None,
    ) -> None:
        self._raw = raw
        self._plan = plan
        self._side = side
        self._kafka = kafka
        self._read: dict[str, Any] | None = None

    def __getitem__(self, name: str) -> Any:
        plan = self._plan
        if plan is None:
            return self._raw[name]
        column = plan.get(name)
        if column is None:
            if plan is TOASTED:
                value = self._raw[name]
                return UNAVAILABLE if is_placeholder(value) else value
            raise KeyError(name)
        value = self._raw.get(name)
        if type(value) in column[0]:
            return value
        read = self._read
        if read is None:
            read = self._read = {}
        elif name in read:
            return read[name]
        read[name] = value = self._convert(name, column[1], value)
        return value

    def _convert(self, name: str, convert: Convert, value: Any) -> Any:
        try:
            if value is None:
                raise Mismatch("", "required value is null" if name in self._raw else "missing")
            return convert(value)
        except Mismatch as exc:
            path = f"{self._side}.{name}" + (f".{exc.path}" if exc.path else "")
            raise self.error(f"{path}: {exc.reason}") from None
        except (ValueError, TypeError, ArithmeticError, LookupError) as exc:
            raise self.error(f"{self._side}.{name}: {type(exc).__name__}: {exc}") from None

    def error(self, reason: str) -> DecodeError:
        k = self._kafka
        if k is None:
            return DecodeError(reason, topic="", partition=-1, offset=-1)
        return DecodeError(reason, topic=k.topic, partition=k.partition, offset=k.offset)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no column {name!r}") from None

    def __contains__(self, name: object) -> bool:
        plan = self._plan
        return name in (plan or self._raw)

    def __iter__(self) -> Iterator[str]:
        plan = self._plan
        return iter(plan or self._raw)

    def __len__(self) -> int:
        plan = self._plan
        return len(plan or self._raw)

    def to_dict(self) -> dict[str, Any]:
        """Every column, converted."""
        return {name: self[name] for name in self}

    def raw(self) -> dict[str, Any]:
        """The columns as Debezium encoded them, unconverted."""
        return self._raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and self.to_dict() == dict(other.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        try:
            return f"Columns({self.to_dict()!r})"
        except DecodeError:
            return f"Columns(raw={self._raw!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Columns, (self.to_dict(),))


def plain(row: Mapping[str, Any] | None) -> Columns | None:
    """A row of values already in their Python form (the test kit's, a row model's dump)."""
    if row is None or isinstance(row, Columns):
        return row
    return Columns(dict(row))

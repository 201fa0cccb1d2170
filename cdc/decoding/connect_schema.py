"""Compile a Kafka Connect schema (as JsonConverter writes it) into a function that checks a
payload against it and converts logical types, once per schema rather than once per record."""

from __future__ import annotations

import base64
import binascii
import reprlib
from collections.abc import Callable
from typing import Any

from cdc.events.columns import Column, Columns, Mismatch, Plan
from cdc.events.fallback import Unrepresentable
from cdc.events.values import (
    PLACEHOLDER_TEXT,
    UNAVAILABLE,
    is_placeholder,
    logical_converter,
    lost_rows,
    shortest_float32,
    to_float,
)

Convert = Callable[[Any], Any]


_BRIEF = reprlib.Repr()
_BRIEF.maxstring = _BRIEF.maxother = 60
_BRIEF.maxlevel = 2


def brief(value: Any) -> str:
    """``repr(value)`` cut short: a reason must stay readable whatever the record holds."""
    text = _BRIEF.repr(value)
    if isinstance(value, str | bytes) and len(value) > 60:
        text += (
            f" ({len(value)} characters)" if isinstance(value, str) else f" ({len(value)} bytes)"
        )
    return text


def _typename(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check(ok: Callable[[Any], bool], expected: str) -> Convert:
    def convert(value: Any) -> Any:
        if not ok(value):
            raise Mismatch("", f"expected {expected}, got {_typename(value)}")
        return value

    return convert


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _float(value: Any) -> Any:
    # JsonConverter writes NaN and the infinities as strings.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Mismatch("", f"expected a number, got {_typename(value)}")
    try:
        return to_float(value)
    except ValueError:
        raise Mismatch("", f"expected a number, got {brief(value)}") from None


def _float32(value: Any) -> Any:
    # Jackson writes a 32-bit float in more digits than PostgreSQL does (1.17549435E-38 for
    # 1.1754944e-38): the same float32, read back as the shortest decimal.
    return shortest_float32(_float(value))


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise Mismatch("", f"expected base64 text, got {_typename(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise Mismatch("", f"invalid base64: {exc}") from None


_PRIMITIVES: dict[str, Convert] = {
    "int8": _check(_is_int, "an integer"),
    "int16": _check(_is_int, "an integer"),
    "int32": _check(_is_int, "an integer"),
    "int64": _check(_is_int, "an integer"),
    "float": _float32,
    "float32": _float32,
    "double": _float,
    "float64": _float,
    "boolean": _check(lambda v: isinstance(v, bool), "a boolean"),
    "string": _check(lambda v: isinstance(v, str), "a string"),
    "bytes": _base64,
}


def compile_schema(schema: Any, toast: bool = False) -> Convert:
    """A converter for non-null values of `schema`. Nulls are handled by the enclosing struct,
    array or map, which knows whether the value is optional. `toast`: the values may hold
    Debezium's stand-in for an unchanged TOASTed column, to be read as UNAVAILABLE; a change
    envelope decides that per record (see `_envelope`)."""
    if not isinstance(schema, dict) or not isinstance(schema.get("type"), str):
        raise Mismatch("", f"not a Connect schema: {brief(schema)}")
    kind = schema["type"]
    if kind == "struct":
        base = _envelope(schema) if is_envelope(schema) else _struct(schema, toast)
    elif kind == "array":
        base = _array(schema, toast)
    elif kind == "map":
        base = _map(schema, toast)
    elif kind in _PRIMITIVES:
        base = _PRIMITIVES[kind]
    else:
        raise Mismatch("", f"unknown Connect type {brief(kind)}")
    logical = logical_converter(schema.get("name"), schema.get("parameters"), kind)
    convert = base if logical is None else guarded(lambda value: logical(base(value)))
    if toast and kind in ("string", "bytes", "array", "map"):
        # Debezium's TOAST stand-in is typed like the column; spot it before conversion.
        return toast_aware(convert)
    return convert


_ENVELOPE_FIELDS = {"before", "after", "op"}


def is_envelope(schema: dict[str, Any]) -> bool:
    fields = schema.get("fields")
    if not isinstance(fields, list):
        return False
    return {
        f.get("field") or f.get("name") for f in fields if isinstance(f, dict)
    } >= _ENVELOPE_FIELDS


def toasted(value: dict[str, Any]) -> bool:
    """Whether a change's `after` may hold TOAST stand-ins: only an update that came without
    the old row (REPLICA IDENTITY DEFAULT). Under FULL identity Debezium sends every value,
    and inserts, deletes and reads never leave one out, so there the placeholder text is a
    real value."""
    return value.get("op") == "u" and value.get("before") is None


def _envelope(schema: dict[str, Any]) -> Convert:
    """A change envelope: `before` and `after` become `Columns`, converted as they are read,
    `after` with TOAST stand-ins only where `toasted`; the rest stays as parsed (the change
    checks what it uses)."""
    fields = {f.get("field"): f for f in schema["fields"] if isinstance(f, dict)}
    before_plan = row_plan(fields["before"], toast=False)
    after_plan = row_plan(fields["after"], toast=False)
    after_toast = row_plan(fields["after"], toast=True)

    def convert(value: Any) -> Any:
        if type(value) is not dict:
            raise Mismatch("", f"expected an object, got {_typename(value)}")
        before = value.get("before")
        if before is not None:
            if type(before) is not dict:
                raise Mismatch("before", f"expected an object, got {_typename(before)}")
            value["before"] = Columns(before, before_plan, "before")
        after = value.get("after")
        if after is not None:
            if type(after) is not dict:
                raise Mismatch("after", f"expected an object, got {_typename(after)}")
            plan = after_toast if toasted(value) else after_plan
            value["after"] = Columns(after, plan, "after")
        return value

    return convert


_NULL = type(None)


def row_plan(schema: Any, toast: bool) -> Plan:
    """The columns of a row struct: for each, the types passing unchanged and the
    conversion (with its check) of any other value."""
    if not isinstance(schema, dict) or schema.get("type") != "struct":
        raise Mismatch("", f"a row must be a struct: {brief(schema)}")
    plan: Plan = {}
    for name, passing, placeholder, inner, optional in _struct_fields(schema, toast):
        fast = () if placeholder else passing
        column: Column = (frozenset((*fast, _NULL) if optional else fast), inner)
        plan[name] = column
    return plan


def guarded(convert: Convert) -> Convert:
    """`convert` with None passed through and its failures reported as a `Mismatch`."""

    def run(value: Any) -> Any:
        if value is None:
            return None
        try:
            return convert(value)
        except Mismatch:
            raise
        except (ValueError, TypeError, ArithmeticError, LookupError) as exc:
            raise Mismatch("", f"{type(exc).__name__}: {exc}") from None

    return run


def toast_aware(convert: Convert | None) -> Convert:
    """UNAVAILABLE for Debezium's TOAST placeholder, else `convert` (or the value as is)."""

    def run(value: Any) -> Any:
        if is_placeholder(value):
            return UNAVAILABLE
        return value if convert is None or value is None else convert(value)

    return run


def _nullable(schema: dict[str, Any], toast: bool) -> Convert:
    inner = compile_schema(schema, toast)
    optional = bool(schema.get("optional", False))

    def convert(value: Any) -> Any:
        if value is None:
            if optional:
                return None
            raise Mismatch("", "required value is null")
        return inner(value)

    return convert


# Types whose values pass unchanged when the schema has no logical type: most columns of a
# row, checked without a call. (type() is exact: a bool is not an int here.)
_PASSING: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("int8", "int16", "int32", "int64"), (int,)),
    **dict.fromkeys(("double", "float64"), (float, int)),
    "boolean": (bool,),
    "string": (str,),
}


def _struct(schema: dict[str, Any], toast: bool) -> Convert:
    return _struct_converter(_struct_fields(schema, toast))


def _struct_fields(
    schema: dict[str, Any], toast: bool
) -> list[tuple[str, tuple[type, ...], tuple[str, ...], Convert, bool]]:
    """Per field: name, the types passing unchanged, the text among them standing for an
    unchanged TOAST value, the converter, optional."""
    fields_schema = schema.get("fields")
    if not isinstance(fields_schema, list):
        raise Mismatch("", "struct schema without fields")
    fields: list[tuple[str, tuple[type, ...], tuple[str, ...], Convert, bool]] = []
    for field in fields_schema:
        name = field.get("field") if isinstance(field, dict) else None
        if not isinstance(name, str):
            raise Mismatch("", "struct field without a name")
        try:
            inner = compile_schema(field, toast)
        except Mismatch as exc:
            raise exc.under(name) from None
        kind = field["type"]
        plain = logical_converter(field.get("name"), field.get("parameters"), kind) is None
        passing = _PASSING.get(kind, ()) if plain else ()
        placeholder = PLACEHOLDER_TEXT if toast and kind == "string" else ()
        fields.append((name, passing, placeholder, inner, bool(field.get("optional", False))))
    return fields


def _struct_converter(
    fields: list[tuple[str, tuple[type, ...], tuple[str, ...], Convert, bool]],
) -> Convert:
    """The struct's converter as straight-line code, one block per field: a loop over the
    fields costs about twice as much per row. Only names made here and field names as
    ``repr`` literals go into the source."""
    scope: dict[str, Any] = {"Mismatch": Mismatch, "_typename": _typename}
    lines = [
        "def convert(value):",
        "    if not isinstance(value, dict):",
        "        raise Mismatch('', f'expected an object, got {_typename(value)}')",
        "    get = value.get",
        "    name = ''",
        "    try:",
    ]
    for i, (name, passing, toasted, inner, optional) in enumerate(fields):
        literal, v = repr(name), f"v{i}"
        scope[f"c{i}"], scope[f"p{i}"], scope[f"t{i}"] = inner, passing, toasted
        lines += [
            f"        name = {literal}",
            f"        {v} = get(name)",
            f"        if type({v}) in p{i} and {v} not in t{i}:",
            "            pass",
            f"        elif {v} is None:",
            "            pass"
            if optional
            else "            raise Mismatch('', 'required value is null' if name in value "
            "else 'missing')",
            "        else:",
            f"            {v} = c{i}({v})",
        ]
    lines += [
        "    except Mismatch as exc:",
        "        raise exc.under(name) from None",
        "    return {" + ", ".join(f"{n!r}: v{i}" for i, (n, *_) in enumerate(fields)) + "}",
    ]
    exec("\n".join(lines), scope)  # noqa: S102 - field names enter only as repr() literals
    convert: Convert = scope["convert"]
    return convert


def _array(schema: dict[str, Any], toast: bool) -> Convert:
    items = schema.get("items") or {}
    item_convert = _nullable(items, toast)
    text = isinstance(items, dict) and items.get("type") == "string"

    def convert(value: Any) -> Any:
        if not isinstance(value, list):
            raise Mismatch("", f"expected an array, got {_typename(value)}")
        if text and lost_rows(value):
            return Unrepresentable("array", None, value)
        out = []
        for index, item in enumerate(value):
            try:
                out.append(item_convert(item))
            except Mismatch as exc:
                raise exc.under(f"[{index}]") from None
        return out

    return convert


def _map(schema: dict[str, Any], toast: bool) -> Convert:
    key_convert = _nullable(schema.get("keys") or {}, toast)
    value_convert = _nullable(schema.get("values") or {}, toast)

    def convert(value: Any) -> Any:
        # JsonConverter writes maps with string keys as objects, others as [key, value] pairs.
        if isinstance(value, dict):
            pairs: list[Any] = list(value.items())
        elif isinstance(value, list):
            pairs = value
        else:
            raise Mismatch("", f"expected a map, got {_typename(value)}")
        out = {}
        for pair in pairs:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise Mismatch("", "map entry is not a [key, value] pair")
            out[key_convert(pair[0])] = value_convert(pair[1])
        return out

    return convert

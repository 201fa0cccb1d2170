"""Rows read lazily: a column is checked and converted on first read, then kept; a value
that contradicts its schema fails only when read, naming the record and the column; a row
model reads only the columns it declares."""

from __future__ import annotations

import datetime as dt
import pickle
import uuid
from decimal import Decimal
from typing import Any

import pytest

from cdc import Change, Columns, DecodeError, KafkaCoordinates, Row
from cdc.routing import handlers_of, on_change
from tests.corpus.hostile import _set, corpus_decoder, corpus_sample, edited
from tests.corpus.load import DATA

KAFKA = KafkaCoordinates(topic=DATA, partition=2, offset=77)


def change_with(encoding: str, edit: Any = None) -> Change:
    """The corpus's first insert, its body edited by ``edit``."""
    sample = corpus_sample(encoding, "table")
    value = sample.value if edit is None else edited(sample, edit)
    event = corpus_decoder(encoding).decode(sample.key, value, KAFKA)
    assert isinstance(event, Change)
    return event


@pytest.mark.parametrize("encoding", ["json", "avro"])
def test_columns_convert_on_first_read_and_keep_the_value(encoding: str) -> None:
    after = change_with(encoding).after
    assert isinstance(after, Columns)
    assert after._read is None  # nothing converted by decoding
    first = after["c_uuid"]
    assert isinstance(first, uuid.UUID)
    assert after["c_uuid"] is first  # converted once
    assert after.c_uuid is first
    assert isinstance(after["c_numeric"], Decimal)
    assert isinstance(after["c_timestamptz"], dt.datetime)
    assert set(after._read or ()) == {"c_uuid", "c_numeric", "c_timestamptz"}


def test_a_bad_column_fails_only_when_read() -> None:
    change = change_with("json", _set("after.c_int", "seven"))
    after = change.after
    assert after is not None
    assert after["id"] == 4  # the others read fine
    with pytest.raises(DecodeError) as caught:
        after["c_int"]
    error = caught.value
    assert (error.topic, error.partition, error.offset, error.part) == (DATA, 2, 77, "value")
    assert error.reason == "after.c_int: expected an integer, got str"
    with pytest.raises(DecodeError):
        after.to_dict()


def test_a_model_reads_only_its_columns() -> None:
    class Slim(Row):
        id: int
        c_text: str | None

    @on_change("corpus.all_types", model=Slim)
    def handler(change: Change[Slim], ctx: Any) -> None: ...

    (declared,) = handlers_of(handler)
    change = change_with("json", _set("after.c_int", "seven"))
    typed = declared.typed(change)
    assert isinstance(typed.after, Slim)
    assert typed.after.id == 4
    assert typed.kafka is change.kafka
    assert typed.source is change.source


def test_a_mapping_without_surprises() -> None:
    after = change_with("json").after
    assert after is not None
    assert "c_int" in after
    assert "nope" not in after
    assert after.get("nope", 5) == 5
    with pytest.raises(KeyError):
        after["nope"]
    with pytest.raises(AttributeError, match="no column 'nope'"):
        _ = after.nope
    whole = after.to_dict()
    assert list(whole) == list(after)
    assert len(after) == len(whole)
    assert after == whole
    assert whole == after
    assert pickle.loads(pickle.dumps(after)) == whole  # noqa: S301 - our own bytes
    assert after.raw()["c_int"] == whole["c_int"]
    assert Columns({"a": 1}) == {"a": 1}
    assert Columns({"a": 1}) != {"a": 2}


def test_the_key_is_read_when_asked_for() -> None:
    change = change_with("json")
    assert change._key_raw is not None
    assert change.key == {"id": 4}
    assert change.key is change.key

"""Every kind of bad record (`tests.corpus.hostile`, real corpus records broken on purpose)
is refused where it should be: by the decoder with a `DecodeError` naming topic, partition,
offset, part and a short, readable reason; or, when well-formed, by the router (an unknown
table or event type) or by its handler's model. The reliability test produces the same kinds
on the real stack."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cdc import DecodeError
from cdc.decoding.connect_schema import brief
from cdc.events import Change, DomainEvent, KafkaCoordinates
from tests.corpus.hostile import (
    ENCODINGS,
    HUGE,
    KINDS,
    UNKNOWN_EVENT,
    UNWATCHED,
    Headers,
    Kind,
    Sample,
    corpus_decoder,
    corpus_sample,
)
from tests.corpus.load import DATA, OrderPlaced

ORDERS = "corpus_outbox.order"


def _cases() -> list[Any]:
    cases = []
    for encoding in ENCODINGS:
        for kind in KINDS:
            if kind.applies(corpus_sample(encoding, kind.target)):
                cases.append(pytest.param(encoding, kind, id=f"{encoding}-{kind.name}"))
    return cases


def _coordinates(kind: Kind, headers: Headers) -> KafkaCoordinates:
    topic = DATA if kind.target == "table" else ORDERS
    return KafkaCoordinates(topic=topic, partition=3, offset=1234, headers=headers)


def test_the_corpus_has_at_least_25_kinds_on_every_encoding() -> None:
    assert len({k.name for k in KINDS}) >= 40
    for encoding in ENCODINGS:
        applicable = [k for k in KINDS if k.applies(corpus_sample(encoding, k.target))]
        assert len(applicable) >= 25, encoding


@pytest.mark.parametrize(("encoding", "kind"), _cases())
def test_hostile_record(encoding: str, kind: Kind) -> None:
    sample = corpus_sample(encoding, kind.target)
    bad = kind.build(sample)
    kafka = _coordinates(kind, bad.headers)
    dec = corpus_decoder(encoding)
    outbox = kind.target == "outbox"
    if kind.stage == "decode":
        with pytest.raises(DecodeError) as caught:
            dec.decode(bad.key, bad.value, kafka, outbox=outbox)
        error = caught.value
        assert (error.topic, error.partition, error.offset) == (kafka.topic, 3, 1234)
        assert error.part == kind.part
        assert kind.reason_for(encoding) in error.reason
        assert f"{kafka.topic}[3]@1234 {kind.part}:" in str(error)
        # Readable whatever the record holds: the huge ones are cut short.
        assert len(error.reason) < 500, error.reason[:500]
        return
    event = dec.decode(bad.key, bad.value, kafka, outbox=outbox)
    if kind.stage == "read":
        # Read lazily: the change decodes, and the column (or key) fails when read.
        assert isinstance(event, Change)
        assert event.after is not None
        read = (lambda: event.key) if kind.part == "key" else event.after.to_dict
        with pytest.raises(DecodeError) as caught:
            read()
        error = caught.value
        assert (error.topic, error.partition, error.offset, error.part) == (
            kafka.topic, 3, 1234, kind.part,
        )  # fmt: skip
        assert kind.reason_for(encoding) in error.reason, error.reason
        assert len(error.reason) < 500, error.reason[:500]
        return
    if kind.stage == "route" and kind.target == "table":
        assert isinstance(event, Change)
        assert event.table.endswith(f".{UNWATCHED}")
    elif kind.stage == "route":
        assert isinstance(event, DomainEvent)
        assert event.type == UNKNOWN_EVENT
    else:
        assert isinstance(event, DomainEvent)
        with pytest.raises(ValidationError):
            OrderPlaced.model_validate(event.payload)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_huge_records_are_close_to_the_broker_limit(encoding: str) -> None:
    sample = corpus_sample(encoding, "table")
    huge = [k for k in KINDS if k.name.startswith("huge")]
    assert len(huge) == 2
    for kind in huge:
        value = kind.build(sample).value
        assert value is not None
        assert HUGE - 64 <= len(value) <= HUGE


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_samples_themselves_decode(encoding: str) -> None:
    """The kinds break good records: unbroken, each sample is a change or an event."""
    for target, wanted in (("table", Change), ("outbox", DomainEvent)):
        sample: Sample = corpus_sample(encoding, target)  # type: ignore[arg-type]
        kind = next(k for k in KINDS if k.target == target)
        kafka = _coordinates(kind, sample.headers)
        event = corpus_decoder(encoding).decode(
            sample.key, sample.value, kafka, outbox=target == "outbox"
        )
        assert isinstance(event, wanted)


def test_a_good_record_after_bad_ones_still_decodes() -> None:
    dec = corpus_decoder("json")
    sample = corpus_sample("json", "table")
    kafka = KafkaCoordinates(topic=DATA, partition=3, offset=1234)
    for kind in KINDS:
        if kind.target == "table" and kind.stage == "decode" and kind.applies(sample):
            bad = kind.build(sample)
            with pytest.raises(DecodeError):
                dec.decode(bad.key, bad.value, kafka)
    assert dec.decode(sample.key, sample.value, kafka).kind.value == "change"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"op": "c"}'.encode("utf-16-le"), "UTF-16 or UTF-32 text?"),
        ('{"op": "c"}'.encode("utf-32"), "UTF-16 or UTF-32 text?"),
        (b'\xef\xbb\xbf{"op": "c"}', "byte order mark"),
    ],
)
def test_json_is_utf8_only(text: bytes, reason: str) -> None:
    """JsonConverter writes UTF-8: other encodings json.loads would guess are refused."""
    dec = corpus_decoder("json-noschema")
    with pytest.raises(DecodeError) as caught:
        dec.decode(None, text, KafkaCoordinates(topic=DATA, partition=0, offset=1))
    assert reason in caught.value.reason


def test_brief_keeps_reasons_short() -> None:
    assert brief("x" * 900_000).endswith("(900000 characters)")
    assert len(brief("x" * 900_000)) < 100
    assert len(brief([[[[1]]]] * 10_000)) < 100
    assert brief("x") == "'x'"

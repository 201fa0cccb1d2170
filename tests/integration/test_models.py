"""`cdc models` on the real stack: the models it writes from the catalog read every row of the
decoder corpus and of the type tests, in every encoding, as the decoded values (and as a field
of the right type reads them in json-noschema); `cdc check` reports a model field that names a
renamed column or whose type cannot hold what its column arrives as."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cdc import Change, Row
from cdc.check import Severity, run_check
from cdc.decoding import decoder_for
from cdc.events import KafkaCoordinates, Op
from cdc.routing import handlers_of, on_change
from cdc.tables.config import Encoding
from cdc.tables.models import class_names
from cdc.testing import RecordReader
from tests.corpus.load import ENCODINGS, decode, decoder, records
from tests.integration.conftest import Pipeline
from tests.integration.test_real_data import (
    Case,
    case_tables,
    check_cases,
    create_types,
    model_values,
    same,
)

pytestmark = pytest.mark.stack

CORPUS_SQL = Path(__file__).parents[1] / "corpus" / "all_types.sql"


def cdc_models(pipeline: Pipeline, out: Path) -> ModuleType:
    """Run `cdc models --out` on the pipeline's file; check ruff leaves the module as it is and
    import it."""
    env = {**os.environ, **pipeline.stack.env()}
    command = [sys.executable, "-m", "cdc", "models", "--tables", str(pipeline.file)]
    result = subprocess.run(
        [*command, "--out", str(out)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    printed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert printed.stdout == out.read_text()
    ruff = Path(sys.executable).parent / "ruff"
    formatted = subprocess.run(
        [str(ruff), "format", "--check", "--diff", str(out)], capture_output=True, text=True
    )
    assert formatted.returncode == 0, formatted.stdout
    spec = importlib.util.spec_from_file_location(f"models_{pipeline.id}", out)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def corpus_schema(pipeline: Pipeline) -> Iterator[str]:
    """The corpus table (tests/corpus/all_types.sql) in a schema of the pipeline's own."""
    schema = f"{pipeline.id}_corpus"
    pipeline.sql(CORPUS_SQL.read_text().replace("corpus", schema))
    try:
        yield schema
    finally:
        pipeline.sql(f"DROP SCHEMA {schema} CASCADE")


def test_corpus_model_reads_every_row_in_every_encoding(
    pipeline: Pipeline, corpus_schema: str, tmp_path: Path
) -> None:
    pipeline.write_file({f"{corpus_schema}.all_types": {}})
    module = cdc_models(pipeline, tmp_path / "corpus_models.py")
    model: type[Row] = module.AllTypes
    # DEFAULT identity: the TOASTed column may be UNAVAILABLE, a delete's old row has the key.
    assert "c_toast: str | Unavailable | None\n" in Path(module.__file__ or "").read_text()

    read: dict[str, list[dict[str, Any]]] = {}  # encoding: each row read, in record order
    failures = []
    for encoding in ENCODINGS:
        dec = decoder(encoding)
        rows = read[encoding] = []
        for record in records(encoding):
            change = decode(dec, record)
            if not isinstance(change, Change) or change.op is Op.TRUNCATE:
                continue
            for side in ("before", "after"):
                columns = getattr(change, side)
                if columns is None:
                    continue
                row = dict(model.model_validate(columns))
                rows.append(row)
                if encoding != "json-noschema":
                    failures += [
                        f"{encoding} {change.op} {side} {name}: {row[name]!r}, decoded {value!r}"
                        for name, value in columns.to_dict().items()
                        if not same(row[name], value)
                    ]
    # 4 snapshot reads, an insert, 3 updates and a delete.
    assert [len(rows) for rows in read.values()] == [9, 9, 9]
    for row, noschema in zip(read["json"], read["json-noschema"], strict=True):
        # Without a schema JSON columns stay text; every other value reads as with one.
        failures += [
            f"json-noschema id {row['id']} {name}: {noschema[name]!r}, with a schema {value!r}"
            for name, value in row.items()
            if name not in ("c_json", "c_jsonb") and not same(noschema[name], value)
        ]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_type_test_models_read_every_value(
    pipeline: Pipeline, encoding: str, tmp_path: Path
) -> None:
    tables = case_tables(pipeline, encoding)
    module = cdc_models(pipeline, tmp_path / "type_models.py")
    names = class_names(pipeline.watched().tables)
    models = {table: getattr(module, names[f"public.{table}"]) for table in tables}

    def expected(case: Case) -> list[Any]:
        # A json column's field is `Any`: without a schema it keeps the text sent.
        if encoding == "json-noschema" and case.sql_type in ("json", "jsonb"):
            return [literal[1:-1] for literal, _ in case.values]
        return model_values(case, encoding)

    failures = check_cases(pipeline, tables, encoding, models, expected)
    assert not failures, "\n".join(failures)


# Arrays, where Debezium knows fewer types than alone: (column type, a value).
ARRAYS = {
    "names": ("name[]", "'{a}'"),  # left out of every change, like the four below
    "xmls": ("xml[]", "ARRAY['<a/>'::xml]"),
    "points": ("point[]", "ARRAY['(1,2)'::point]"),
    "monies": ("money[]", "'{1.5}'"),
    "intervals": ("interval[]", "'{1 day}'"),
    "bits": ("bit(3)[]", "ARRAY[B'101']::bit(3)[]"),  # always NULL
    "positives": ("{p}_positive[]", "'{5}'"),  # a domain's items: the bytes of their text
    "pairs": ("{p}_pair[]", "ARRAY[ROW(1, 'a')::{p}_pair]"),
    "boxes": ("box[]", "ARRAY['((0,0),(1,1))'::box]"),
    # Items json-noschema leaves as Debezium encodes them.
    "dates": ("date[]", "'{2024-02-29,NULL,4713-01-01 BC}'"),
    "stamps": ("timestamp(3)[]", "'{2024-02-29 10:00:00.123}'"),
    "byteas": ("bytea[]", "ARRAY['\\x00ff'::bytea]"),
    "hstores": ("hstore[]", "ARRAY['a=>1'::hstore]"),
    # Items read as alone.
    "name": ("name", "'n'"),
    "mac8": ("macaddr8", "'08:00:2b:01:02:03:04:05'"),
    "mac8s": ("macaddr8[]", "'{08:00:2b:01:02:03:04:05}'"),
    "zoned": ("timetz[]", "'{10:00:00+02}'"),
    "moods": ("{p}_mood[]", "'{ok,sad}'"),
    "uuids": ("uuid[]", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'"),
    "numerics": ("numeric(5,2)[]", "'{1.5,NULL}'"),
    "jsons": ("jsonb[]", "ARRAY['{\"a\": 1}'::jsonb]"),
    "ranges": ("daterange[]", "'{\"[2024-01-01,2024-02-01)\"}'"),
    "domain_ints": ("{p}_ints", "'{5}'"),  # a domain over an array: as the array
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_models_of_arrays_debezium_treats_apart(
    pipeline: Pipeline, encoding: str, tmp_path: Path
) -> None:
    create_types(pipeline)
    pipeline.sql(f"CREATE DOMAIN {pipeline.id}_ints AS int[]")
    table = pipeline.table("arrays")
    columns = ", ".join(f"{c} {t.replace('{p}', pipeline.id)}" for c, (t, _) in ARRAYS.items())
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, {columns})")
    pipeline.write_file({table: {"replica_identity": "full"}}, encoding=encoding)
    pipeline.apply()
    out = tmp_path / "array_models.py"
    module = cdc_models(pipeline, out)
    text = out.read_text()
    for column, sql in [("names", "name"), ("xmls", "xml"), ("monies", "money")]:
        assert f"    # {column} ({sql}[]): Debezium does not send arrays of {sql}\n" in text
    assert "    bits: None  # bit(3)[]: Debezium sends every bit array as NULL\n" in text
    if encoding == "json-noschema":
        assert "    dates: list[Any] | None  # date[]: json-noschema's items, as Debezium" in text
    else:
        assert "    dates: list[date | Unrepresentable | None] | None\n" in text

    values = ", ".join(v.replace("{p}", pipeline.id) for _, v in ARRAYS.values())
    pipeline.sql(f"INSERT INTO {table} VALUES (1, {values})")
    pipeline.sql(f"INSERT INTO {table} (id) VALUES (2)")
    topic = pipeline.topic(table)
    with RecordReader(pipeline.stack.kafka_bootstrap, [topic]) as reader:
        messages = reader.wait(lambda got: len(got) >= 2, 90)
    dec = decoder_for(Encoding(encoding), pipeline.stack.registry_url)
    model = getattr(module, class_names([f"public.{table}"])[f"public.{table}"])
    failures = []
    for m in messages:
        change = dec.decode(m.key(), m.value(), KafkaCoordinates(topic, m.partition(), m.offset()))
        assert isinstance(change, Change)
        assert change.after is not None
        row = dict(model.model_validate(change.after))
        if encoding != "json-noschema":
            failures += [
                f"{name}: model read {row[name]!r}, decoded {value!r}"
                for name, value in change.after.to_dict().items()
                if not same(row[name], value)
            ]
    assert not failures, "\n".join(failures)


def test_check_reports_a_renamed_column_and_a_wrong_type(pipeline: Pipeline) -> None:
    table = pipeline.table("people")
    pipeline.sql(
        f"CREATE TABLE {table} (id int PRIMARY KEY, email_address text, "
        "born timestamptz, nick text)"
    )
    pipeline.write_file({table: {"replica_identity": "full"}})
    pipeline.apply()

    class Person(Row):
        id: int
        email: str  # the column is email_address now
        born: str  # a timestamptz arrives as a datetime
        nick: str | None

    def greet(change: Change[Person], ctx: object) -> None:
        print(change.after)

    handlers = handlers_of(on_change(table, ops="c", model=Person)(greet))
    report = run_check(handlers, pipeline.watched(), pipeline.settings)

    subject = f"model {__name__}.{Person.__qualname__} (public.{table})"
    found = [(f.severity, f.problem) for f in report.findings if f.subject == subject]
    assert (
        Severity.ERROR,
        f"field 'email' reads column 'email', which public.{table} does not have: renamed to "
        "'email_address'?",
    ) in found
    assert (
        Severity.ERROR,
        "field 'born' is declared str, but column 'born' (timestamp with time zone) arrives as "
        "datetime",
    ) in found
    assert len(found) == 2, found

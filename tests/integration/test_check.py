"""`cdc check` against the real stack: a broken setup reports each mismatch, an applied one is
clean, and drift made by hand afterwards shows up."""

from __future__ import annotations

from typing import Any

import pytest

from cdc import Change, ConfigError, Row
from cdc.check import Report, Severity, run_check
from cdc.routing import TableHandler, handlers_of, on_change
from cdc.settings import MASK
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack


def handle(pipeline: Pipeline, short: str, old_row: bool = False, **declared: Any) -> TableHandler:
    """A fresh handler (the decorator marks the function it gets, so never reuse one)."""

    def reads_old_row(change: Change[Any], ctx: object) -> None:
        print(change.before)

    def reacts(change: Change[Any], ctx: object) -> None:
        print(change.after)

    func = reads_old_row if old_row else reacts
    (found,) = handlers_of(on_change(f"public.{pipeline.table(short)}", **declared)(func))
    return found


def by_subject(report: Report) -> dict[str, list[tuple[Severity, str]]]:
    found: dict[str, list[tuple[Severity, str]]] = {}
    for f in report.findings:
        found.setdefault(f.subject, []).append((f.severity, f.problem))
    return found


def test_broken_setup_reports_each_mismatch(pipeline: Pipeline) -> None:
    for short in ("dflt", "uncaptured", "unhandled"):
        pipeline.sql(f"CREATE TABLE {pipeline.table(short)} (id int PRIMARY KEY, v text)")
    dflt, unhandled = f"public.{pipeline.table('dflt')}", f"public.{pipeline.table('unhandled')}"
    pipeline.write_file({pipeline.table("dflt"): {}, pipeline.table("unhandled"): {}})
    old_row = handle(pipeline, "dflt", old_row=True, ops="u")
    handlers = [old_row, handle(pipeline, "uncaptured")]

    report = run_check(handlers, pipeline.watched(), pipeline.settings)

    found = by_subject(report)
    file = str(pipeline.file)
    (uncaptured,) = found[f"public.{pipeline.table('uncaptured')}"]
    assert uncaptured[0] is Severity.ERROR
    assert f"not in {file}: Debezium does not capture it" in uncaptured[1]
    assert found[f"handler {old_row.name}"] == [
        (
            Severity.ERROR,
            f"reads `before`, but {file} declares {dflt} with replica identity default: "
            "an update carries no old row",
        )
    ]
    assert found[unhandled] == [
        (Severity.WARNING, f"captured (in {file}) but no handler reacts to its changes")
    ]
    # Nothing applied yet: neither connector nor publication.
    assert found[f"connector {pipeline.name}"][0][1].startswith("does not exist in Kafka Connect")
    assert found[f"publication {pipeline.id}"] == [(Severity.ERROR, "does not exist")]
    assert len(report.errors) == 4, report.lines()
    assert not report.ok


def test_model_fields_are_checked_against_the_live_table(pipeline: Pipeline) -> None:
    table = pipeline.table("users")
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, email text, secret text)")
    pipeline.write_file({table: {"replica_identity": "full", "exclude_columns": ["secret"]}})

    class User(Row):
        id: int
        email: str
        secret: str | None = None
        nickname: str | None = None

    report = run_check(
        [handle(pipeline, "users", ops="cu", model=User)], pipeline.watched(), pipeline.settings
    )
    subject = f"model {User.__module__}.{User.__qualname__} (public.{table})"
    # (Not applied yet, the table is DEFAULT: a warning says `email` rejects UNAVAILABLE.)
    problems = [p for s, p in by_subject(report)[subject] if s is Severity.ERROR]
    assert len(problems) == 2, problems
    assert any("'secret', which" in p and "excludes" in p for p in problems)
    assert any(f"'nickname', which public.{table} does not have" in p for p in problems)


def test_applied_setup_is_clean_and_later_drift_is_reported(pipeline: Pipeline) -> None:
    full, dflt = pipeline.table("full"), pipeline.table("dflt")
    for table in (full, dflt):
        pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    pipeline.write_file({full: {"replica_identity": "full"}, dflt: {}})
    handlers = [handle(pipeline, "full", old_row=True), handle(pipeline, "dflt")]
    pipeline.apply()

    report = run_check(handlers, pipeline.watched(), pipeline.settings)
    assert report.findings == [], report.lines()

    pipeline.sql(f"ALTER TABLE {full} REPLICA IDENTITY DEFAULT")
    report = run_check(handlers, pipeline.watched(), pipeline.settings)
    found = by_subject(report)
    assert found[f"public.{full}"] == [
        (
            Severity.ERROR,
            f"replica identity is DEFAULT in the database, but {pipeline.file} declares full",
        )
    ]
    assert "DEFAULT in the database" in found[f"handler {handlers[0].name}"][0][1]
    assert len(report.findings) == 2, report.lines()

    pipeline.apply()  # the fix the finding names
    assert run_check(handlers, pipeline.watched(), pipeline.settings).findings == []

    config = pipeline.connect.get_config(pipeline.name)
    assert config is not None
    # The password itself where the file renders a reference: Connect checks that it works.
    secret = pipeline.stack.debezium_password
    config |= {"snapshot.mode": "no_data", "database.password": secret}
    pipeline.connect.put_config(pipeline.name, config)
    report = run_check(handlers, pipeline.watched(), pipeline.settings)
    (connector,) = report.findings
    assert connector.subject == f"connector {pipeline.name}"
    assert "in 2 key(s)" in connector.problem
    assert "snapshot.mode is 'no_data' (expected 'initial')" in connector.problem
    assert (
        f"database.password is {MASK} (expected '{pipeline.settings.debezium_password_ref}')"
        in connector.problem
    )
    assert secret not in "\n".join(report.lines())
    assert connector.fix == (
        f"run `cdc connector apply --tables {pipeline.file}` to put the config the file renders"
    )


def test_unreachable_connect_is_a_finding(pipeline: Pipeline) -> None:
    table = pipeline.table("t")
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    pipeline.write_file({table: {}})
    settings = pipeline.settings.model_copy(update={"connect_url": "http://127.0.0.1:9"})
    report = run_check([handle(pipeline, "t")], pipeline.watched(), settings)
    errors = {f.subject: f.problem for f in report.errors}
    assert errors[f"connector {pipeline.name}"].startswith(
        "Kafka Connect at http://127.0.0.1:9 cannot be asked"
    )


def test_a_watched_partitioned_parent_is_clean_and_its_partitions_are_checked(
    pipeline: Pipeline,
) -> None:
    m = pipeline.partitioned_table("m", "eu", "us")
    pipeline.write_file({m: {"replica_identity": "full"}})
    handlers = [handle(pipeline, "m", old_row=True)]
    pipeline.apply()
    assert run_check(handlers, pipeline.watched(), pipeline.settings).findings == []

    # A partition made after apply has PostgreSQL's DEFAULT identity, not the parent's.
    pipeline.sql(f"CREATE TABLE {m}_as PARTITION OF {m} FOR VALUES IN ('as')")
    found = by_subject(run_check(handlers, pipeline.watched(), pipeline.settings))
    ((severity, problem),) = found[f"public.{m}"]
    assert severity is Severity.ERROR
    assert f"partition(s) public.{m}_as (DEFAULT) lack the replica identity FULL" in problem
    ((severity, problem),) = found[f"handler {handlers[0].name}"]
    assert "reads `before`, but its partition(s) public." in problem
    assert len(found) == 2, found
    pipeline.apply()
    assert run_check(handlers, pipeline.watched(), pipeline.settings).findings == []

    # Without publish_via_partition_root the partitions are published under their own names.
    pipeline.sql(f"ALTER PUBLICATION {pipeline.id} SET (publish_via_partition_root = false)")
    report = run_check(handlers, pipeline.watched(), pipeline.settings)
    (finding,) = report.findings
    assert finding.subject == f"publication {pipeline.id}"
    assert f"publish_via_partition_root is off, so the changes of public.{m}" in finding.problem
    pipeline.apply()
    assert run_check(handlers, pipeline.watched(), pipeline.settings).findings == []


def test_a_partition_listed_instead_of_its_parent_or_beside_it(pipeline: Pipeline) -> None:
    m = pipeline.partitioned_table("m", "eu", "us")
    eu = f"{m}_eu"
    pipeline.write_file({eu: {}})
    found = by_subject(run_check([], pipeline.watched(), pipeline.settings))
    assert (
        Severity.WARNING,
        f"a partition of public.{m}: only the rows it holds are captured, on its own topic, "
        "and rows that move to another partition are seen as deleted",
    ) in found[f"public.{eu}"]

    pipeline.write_file({m: {}, eu: {}})
    report = run_check([], pipeline.watched(), pipeline.settings)
    (twice,) = [f for f in report.errors if f.subject == f"public.{eu}"]
    assert twice.problem.startswith(f"a partition of public.{m}, which is watched too")
    assert twice.fix.startswith(f"remove `public.{eu}` from `tables:`")
    with pytest.raises(ConfigError) as refused:
        pipeline.apply()
    assert f"tables.public.{eu}: a partition of public.{m}, which is watched too" in str(
        refused.value
    )
    assert pipeline.connect.get_config(pipeline.name) is None  # nothing was changed


def test_a_model_field_for_a_generated_column_is_named(pipeline: Pipeline) -> None:
    table = pipeline.table("prices")
    pipeline.sql(
        f"CREATE TABLE {table} (id int PRIMARY KEY, net int, "
        "gross int GENERATED ALWAYS AS (net * 2) STORED)"
    )
    pipeline.write_file({table: {}})

    class Price(Row):
        id: int
        net: int
        gross: int

    handler = handle(pipeline, "prices", ops="c", model=Price)
    report = run_check([handler], pipeline.watched(), pipeline.settings)
    (finding,) = [f for f in report.errors if f.subject.startswith("model ")]
    assert finding.subject == f"model {Price.__module__}.{Price.__qualname__} (public.{table})"
    assert finding.problem == (
        f"field 'gross' (handler {handler.name}) reads column 'gross', which is generated in "
        f"public.{table}: PostgreSQL's pgoutput never sends generated columns, so no change "
        "carries it (only snapshot reads do)"
    )
    assert "compute 'gross' in the handler" in finding.fix


def test_multi_dimensional_array_columns_are_named(pipeline: Pipeline) -> None:
    """Debezium cannot carry a multi-dimensional array's values: the check names the columns
    declared so (a warning: a 2-D value in a column declared one-dimensional is not seen)."""
    table = pipeline.table("grids")
    pipeline.sql(
        f"CREATE TABLE {table} (id int PRIMARY KEY, cells int[][], tags text[][], ok int[])"
    )
    pipeline.write_file({table: {}})
    report = run_check([], pipeline.watched(), pipeline.settings)
    (finding,) = [f for f in report.findings if "multi-dimensional" in f.problem]
    assert finding.severity is Severity.WARNING
    assert finding.subject == f"public.{table}"
    assert finding.problem.startswith("column(s) cells, tags are declared multi-dimensional")

"""A bad watched-tables file fails ``cdc connector apply`` with a message naming the problem,
and changes nothing: no connector, no publication, no replica identity change, no grants."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cdc import ConfigError
from tests.integration.conftest import Pipeline


def assert_nothing_changed(pipeline: Pipeline, existing: str) -> None:
    assert pipeline.connect.get_config(pipeline.name) is None
    assert pipeline.sql("SELECT 1 FROM pg_publication WHERE pubname = %s", (pipeline.id,)) == []
    assert pipeline.sql("SELECT relreplident FROM pg_class WHERE relname = %s", (existing,)) == [
        ("d",)
    ]
    assert pipeline.sql(
        "SELECT has_table_privilege(%s, %s, 'SELECT')",
        (pipeline.stack.debezium_user, f"public.{existing}"),
    ) == [(False,)]


def run_cli(pipeline: Pipeline) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **pipeline.stack.env(), "CDC_WATCHED_TABLES": str(pipeline.file)}
    return subprocess.run(
        [sys.executable, "-m", "cdc", "connector", "apply"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_unknown_table_fails_and_changes_nothing(pipeline: Pipeline) -> None:
    existing, missing = pipeline.table("real"), pipeline.table("missing")
    pipeline.sql(f"CREATE TABLE {existing} (id int PRIMARY KEY, v text)")
    pipeline.write_file({existing: {"replica_identity": "full"}, missing: {}})
    with pytest.raises(ConfigError) as info:
        pipeline.apply()
    assert f"tables.public.{missing}: no such table" in str(info.value)
    assert_nothing_changed(pipeline, existing)

    result = run_cli(pipeline)
    assert result.returncode == 2
    assert f"public.{missing}: no such table" in result.stderr
    assert_nothing_changed(pipeline, existing)


def test_unknown_excluded_column_fails(pipeline: Pipeline) -> None:
    existing = pipeline.table("cols")
    pipeline.sql(f"CREATE TABLE {existing} (id int PRIMARY KEY, v text)")
    pipeline.write_file({existing: {"exclude_columns": ["nope"]}})
    with pytest.raises(
        ConfigError, match=rf"exclude_columns: no column 'nope' in public\.{existing}"
    ):
        pipeline.apply()
    assert_nothing_changed(pipeline, existing)


def test_malformed_option_fails_and_changes_nothing(pipeline: Pipeline) -> None:
    existing = pipeline.table("opt")
    pipeline.sql(f"CREATE TABLE {existing} (id int PRIMARY KEY, v text)")
    pipeline.write_file({existing: {"replica_identity": "sometimes"}})
    with pytest.raises(ConfigError, match=rf"tables\.public\.{existing}\.replica_identity"):
        pipeline.apply()
    result = run_cli(pipeline)
    assert result.returncode == 2
    assert "replica_identity" in result.stderr
    assert "sometimes" in result.stderr
    assert_nothing_changed(pipeline, existing)


def test_keyless_table_needs_full_replica_identity(pipeline: Pipeline) -> None:
    keyless = pipeline.table("keyless")
    pipeline.sql(f"CREATE TABLE {keyless} (v text)")
    pipeline.write_file({keyless: {}})
    with pytest.raises(ConfigError, match=r"no primary key, so replica_identity must be full"):
        pipeline.apply()
    assert_nothing_changed(pipeline, keyless)
    # Still writable: it never joined a publication.
    pipeline.sql(f"INSERT INTO {keyless} VALUES ('x')")
    pipeline.sql(f"UPDATE {keyless} SET v = 'y'")

"""The commands that reach the stack with ``--tables other.yaml`` name other.yaml, never
cdc.yaml: `cdc connector apply` and `cdc db prepare` in their errors, `cdc run` in its check
at start and in `consumer.started`; and so do pipelines started from other.yaml in tests.
(Without the stack: tests/unit/test_tables_file.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cdc import ConfigError
from cdc.testing import Pipelines
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.stack

OTHER = "other.yaml"
HANDLER = """
from cdc import on_change


@on_change("public.{table}")
def react(change, ctx):
    pass
"""


@pytest.fixture
def other(pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The pipeline, its file other.yaml in the directory the commands run in."""
    monkeypatch.chdir(tmp_path)
    pipeline.file = tmp_path / OTHER
    pipeline.settings = pipeline.settings.model_copy(update={"watched_tables": pipeline.file})
    return pipeline


def cdc(pipeline: Pipeline, *args: str) -> subprocess.Popen[str]:
    """``cdc ... --tables other.yaml``, as a user runs it; its output is all on stdout."""
    env = {k: v for k, v in os.environ.items() if k != "CDC_WATCHED_TABLES"}
    return subprocess.Popen(
        [sys.executable, "-m", "cdc", *args, "--tables", OTHER],
        env={**env, **pipeline.stack.env(), "COLUMNS": "300", "PYTHONPATH": os.getcwd()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("command", [["connector", "apply"], ["db", "prepare"]])
def test_apply_and_prepare_errors_name_the_file(other: Pipeline, command: list[str]) -> None:
    missing = other.table("missing")
    other.write_file({missing: {}})
    proc = cdc(other, *command)
    printed, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, printed
    assert f"error: {OTHER}: 1 problem(s)\n  - tables.public.{missing}: no such table" in printed
    assert "cdc.yaml" not in printed


def test_run_checks_and_logs_the_file(other: Pipeline) -> None:
    handled, unhandled = other.table("handled"), other.table("unhandled")
    for table in (handled, unhandled):
        other.sql(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    other.write_file({handled: {}, unhandled: {}})
    other.apply()
    module = f"handlers_{other.id}"
    Path(f"{module}.py").write_text(HANDLER.format(table=handled))
    proc = cdc(other, "run", "--handlers", module, "--group", other.id)
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the check's warning, then the consumer starts
            lines.append(line)
            if "consumer.started" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    printed = "".join(lines) + rest
    assert proc.returncode == 0, printed
    assert (
        f"warning: public.{unhandled}: captured (in {OTHER}) but no handler reacts to its "
        f'changes\n  fix: add a handler with `@on_change("public.{unhandled}")`, or remove '
        f"`public.{unhandled}` from `tables:` in {OTHER} and run "
        f"`cdc connector apply --tables {OTHER}`\n" in printed
    )
    started = json.loads(lines[-1])
    assert started["event"] == "consumer.started"
    assert started["tables_file"] == OTHER
    assert "cdc.yaml" not in printed


def test_pipelines_name_the_file(other: Pipeline) -> None:
    other.write_file({other.table("missing"): {}})
    pipelines = Pipelines(other.stack)
    try:
        with pytest.raises(ConfigError) as info:
            pipelines.start(other.file, ["handlers"])
    finally:
        pipelines.close()
    assert info.value.source == str(other.file)

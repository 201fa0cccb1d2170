"""A watched-tables file other than cdc.yaml, given with ``--tables`` or ``CDC_WATCHED_TABLES``:
every command that reads it names that file in what it prints, never the default. Run as
users run ``cdc`` (its ``main``), in a directory without a cdc.yaml and with no stack to
reach: PostgreSQL refuses, Kafka Connect is not asked."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
import typer
from typer.core import TyperCommand, TyperGroup

from cdc.cli import app, main

OTHER = "other.yaml"
WATCHING = """\
connector: {name: repro, publication: repro_pub}
tables:
  public.t_watched: {}
"""
HANDLERS = """\
from cdc import on_change


@on_change("public.t_unwatched")
def react(change, ctx):
    pass
"""

Cdc = Callable[..., tuple[int, str]]


@pytest.fixture
def shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Cdc]:
    """``shell(*args)``: run ``cdc``; its exit code and all it printed, which never names
    cdc.yaml. The file is other.yaml, watching public.t_watched."""
    monkeypatch.chdir(tmp_path)
    Path(OTHER).write_text(WATCHING)
    monkeypatch.setattr(sys, "path", list(sys.path))  # `cdc run` adds the directory
    for name in ("CDC_WATCHED_TABLES", "CDC_ENV_FILE", "CDC_SECRETS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDC_STACK_DIR", str(tmp_path / "no-stack"))
    monkeypatch.setenv("CDC_CONNECT_URL", "")
    monkeypatch.setenv("CDC_PG_PORT", "1")
    monkeypatch.setenv("COLUMNS", "300")

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["cdc", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        captured = capsys.readouterr()
        printed = captured.out + captured.err
        assert "cdc.yaml" not in printed
        return int(exited.value.code or 0), printed

    # `cdc` points the logs at this test's captured stderr: the tests after it log elsewhere.
    logging = structlog.get_config()
    yield run
    structlog.configure(**logging)


@pytest.fixture(params=["--tables", "CDC_WATCHED_TABLES"])
def cdc(request: pytest.FixtureRequest, shell: Cdc, monkeypatch: pytest.MonkeyPatch) -> Cdc:
    """``shell``, with other.yaml given as the file one way or the other."""
    if request.param == "--tables":
        return lambda *args: shell(*args, "--tables", OTHER)
    monkeypatch.setenv("CDC_WATCHED_TABLES", OTHER)
    return shell


def tables_commands() -> list[list[str]]:
    """Every command with a ``--tables`` option, with its required arguments."""
    found = []

    def walk(command: object, path: list[str]) -> None:
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        elif isinstance(command, TyperCommand) and any(
            "--tables" in p.opts for p in command.params
        ):
            required = [p for p in command.params if p.required]
            args = [p.opts[0] for p in required if p.param_type_name == "option"]
            # A required option gets a value that parses as any type; an argument, a table.
            found.append(
                path
                + [a for opt in args for a in (opt, "0")]
                + ["public.t_watched" for p in required if p.param_type_name == "argument"]
            )

    walk(typer.main.get_command(app), [])
    return found


def test_every_command_with_tables_is_covered() -> None:
    assert sorted(" ".join(c) for c in tables_commands()) == [
        "check",
        "connector apply",
        "connector recover",
        "connector render",
        "connector restart",
        "connector status",
        "console",
        "controls",
        "db prepare",
        "deploy compose",
        "deploy kubernetes",
        "dlq list",
        "dlq replay",
        "lag",
        "models",
        "pause",
        "resume",
        "rewind --to 0 --reason 0",
        "run",
        "schedule list",
        "skip --topic 0 --partition 0 --offset 0 --reason 0",
        "snapshot public.t_watched",
    ]


@pytest.mark.parametrize("args", tables_commands(), ids=" ".join)
def test_a_bad_file_is_named(cdc: Cdc, args: list[str]) -> None:
    Path(OTHER).write_text("tables: [")
    code, printed = cdc(*args)
    assert code == 2
    assert f"error: {OTHER}: 1 problem(s)\n  - not valid YAML" in printed


def handlers_module() -> str:
    module = f"repro_{uuid.uuid4().hex[:8]}"  # each test imports its own
    Path(f"{module}.py").write_text(HANDLERS)
    return module


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_findings_and_fixes_name_the_file(cdc: Cdc, command: str) -> None:
    code, printed = cdc(command, "--handlers", handlers_module())
    assert code in {1, 2}  # `cdc run` refuses to start
    assert re.search(rf"public\.t_unwatched: handled by \S+ but not in {OTHER}: Debezium", printed)
    assert (
        f"fix: add `public.t_unwatched: {{}}` under `tables:` in {OTHER}, "
        f"then run `cdc connector apply --tables {OTHER}`" in printed
    )
    assert f"public.t_watched: captured (in {OTHER})" in printed
    assert f"correct the CDC_PG_* settings, then run `cdc check --tables {OTHER}` again" in printed


def test_snapshot_names_the_file(cdc: Cdc) -> None:
    code, printed = cdc("snapshot", "t_other")
    assert code == 2
    assert f"error: {OTHER}: 1 problem(s)\n  - public.t_other is not a watched table" in printed


def test_deploy_kubernetes_mounts_the_file_by_its_name(cdc: Cdc) -> None:
    """In the pod too, what names the file (`cdc check` at start) names other.yaml."""
    code, printed = cdc("deploy", "kubernetes")
    assert code == 0
    assert f"CDC_WATCHED_TABLES: /etc/cdc/config/{OTHER}\n" in printed
    assert f"  {OTHER}: |\n    connector:" in printed


def test_settings_shows_the_file(shell: Cdc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_WATCHED_TABLES", OTHER)
    code, printed = shell("settings")
    assert code == 0
    assert re.search(rf"│ watched_tables +│ {OTHER} +│", printed), printed

"""What the ``cdc`` commands share: the app, the console, the options and the
settings, watched-tables file and handlers they start from."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from cdc.errors import ConfigError
from cdc.logs import LogFormat, configure_logging
from cdc.settings import Settings, load_settings, stack_dir

if TYPE_CHECKING:
    from cdc.check import Report
    from cdc.routing import Handler
    from cdc.stack.local import LocalStack
    from cdc.tables.config import WatchedTables

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Markdown joins a docstring's wrapped lines into sentences (rich mode keeps the breaks).
    rich_markup_mode="markdown",
    help="React to PostgreSQL changes captured by Debezium.",
)
console = Console()


class RenderFormat(StrEnum):
    JSON = "json"
    STRIMZI = "strimzi"


WatchedOpt = Annotated[
    Path | None,
    typer.Option(
        "--tables", "-t", help="Watched-tables file (default: $CDC_WATCHED_TABLES or cdc.yaml)."
    ),
]


@app.callback()
def _setup(
    log_level: Annotated[
        str, typer.Option(envvar="CDC_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
    log_format: Annotated[
        LogFormat,
        typer.Option(
            envvar="CDC_LOG_FORMAT",
            help="console (readable lines), json (one object a line), or auto: console on a "
            "terminal, json elsewhere.",
        ),
    ] = "auto",
) -> None:
    configure_logging(log_level, log_format)


def _local_stack() -> LocalStack:
    from cdc.stack.local import LocalStack

    return LocalStack(stack_dir())


def _watched(
    tables: Path | None, settings: Settings | None = None, **given: object
) -> tuple[Settings, WatchedTables]:
    """The settings with the options given (None: not given; ``--tables`` is ``watched_tables``)
    and the file they name: the one place that decides the file, which all else names from
    ``settings.watched_tables``."""
    from cdc.tables.config import load_watched_tables

    given = {"watched_tables": tables, **given}
    settings = (settings or load_settings()).model_copy(
        update={k: v for k, v in given.items() if v is not None}
    )
    return settings, load_watched_tables(settings.watched_tables)


HandlersOpt = Annotated[
    str | None,
    typer.Option(
        "--handlers",
        help="Handler module(s) or package(s), comma-separated (default: $CDC_HANDLERS).",
    ),
]


def _consumer_setup(
    tables: Path | None, handlers: str | None, group: str | None = None
) -> tuple[Settings, WatchedTables, list[Handler]]:
    from cdc.routing import discover

    # Like `python -m`: the handlers live in the project the command runs in.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    settings, watched = _watched(tables, handlers=handlers, group_id=group)
    found = discover(settings.handler_modules())
    if not found:
        raise ConfigError(
            f"handlers {settings.handlers!r}", ["no @on_change or @on_event handler found"]
        )
    return settings, watched, found


def _report(report: Report, out: Console) -> None:
    for line in report.lines():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    summary = f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
    out.print(
        summary if report.findings else "no drift: handlers, file, connector and database agree"
    )

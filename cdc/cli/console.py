"""``cdc console``: the web console, against the running consumers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cdc.cli.common import HandlersOpt, WatchedOpt, _consumer_setup, app
from cdc.errors import ConfigError

if TYPE_CHECKING:
    from cdc.console.server import ConsoleServer


def console_server() -> type[ConsoleServer]:
    """The console's server, or why it cannot be had (its extra is not installed)."""
    try:
        from cdc.console.server import ConsoleServer
    except ImportError as exc:
        raise ConfigError(
            "console", [f"{exc.name} is missing: pip install 'reactive-cdc[console]'"]
        ) from exc
    return ConsoleServer


@app.command("console")
def console_command(
    tables: WatchedOpt = None,
    handlers: HandlersOpt = None,
    host: Annotated[
        str | None,
        typer.Option(help="Where to listen (default: $CDC_CONSOLE_HOST, else 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="The port (default: $CDC_CONSOLE_PORT, else 9401).")
    ] = None,
) -> None:
    """Serve the web console: workloads and handlers with their state, throughput and lag,
    the connector and its slot, the dead-letter topic (search, a record, replay, skip), and
    pause and resume. Every page needs the token `CDC_CONSOLE_TOKEN` (best as the file
    `cdc_console_token` in `CDC_SECRETS_DIR`); on loopback unless told otherwise."""
    settings, watched, found = _consumer_setup(tables, handlers)
    given = {"console_host": host, "console_port": port}
    settings = settings.model_copy(update={k: v for k, v in given.items() if v is not None})
    console_server()(settings, watched, found).run()

"""The ``cdc`` command."""

from __future__ import annotations

import sys

from rich.console import Console

# Each module adds its commands to the app.
from cdc.cli import (  # noqa: F401
    connector,
    console,
    consumer,
    control,
    database,
    deploy,
    dlq,
    schedule,
    stack,
)
from cdc.cli.common import app
from cdc.errors import CdcError

__all__ = ["app", "main"]


def main() -> None:
    import httpx
    import psycopg
    from confluent_kafka import KafkaError, KafkaException

    err = Console(stderr=True)
    try:
        app()
    except CdcError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except psycopg.Error as exc:
        err.print(f"[bold red]error:[/] PostgreSQL: {exc}", highlight=False)
        sys.exit(2)
    except httpx.HTTPError as exc:
        err.print(f"[bold red]error:[/] {exc.request.url}: {exc}", highlight=False)
        sys.exit(2)
    except KafkaException as exc:
        reason = exc.args[0].str() if isinstance(exc.args[0], KafkaError) else exc.args[0]
        err.print(f"[bold red]error:[/] Kafka: {reason}", highlight=False)
        sys.exit(2)

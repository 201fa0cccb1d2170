"""``cdc db``: the application database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cdc.settings import load_settings

if TYPE_CHECKING:
    pass

from cdc.cli.common import (
    WatchedOpt,
    _watched,
    app,
    console,
)

db_app = typer.Typer(no_args_is_help=True, help="The application database.")
app.add_typer(db_app, name="db")


@db_app.command("init")
def db_init(
    schema: Annotated[
        list[Path] | None, typer.Option(help="SQL file(s) to run as the application role.")
    ] = None,
) -> None:
    """Create the application and Debezium roles and database (when a superuser password is
    set), then run the given schema files as the application role."""
    import psycopg

    from cdc.stack.config import DatabaseRoles, bootstrap_postgres
    from cdc.stack.probes import connect_superuser

    settings = load_settings()
    if settings.pg_superuser_password is not None:
        with connect_superuser(
            settings.pg_host,
            settings.pg_port,
            settings.pg_superuser_password.get_secret_value(),
            user=settings.pg_superuser,
        ) as conn:
            roles = DatabaseRoles(
                app_password=settings.pg_password.get_secret_value(),
                debezium_password=settings.debezium_password.get_secret_value(),
                database=settings.pg_database,
                app_user=settings.pg_user,
                debezium_user=settings.debezium_user,
            )
            bootstrap_postgres(conn, roles)
        console.print("roles and database ready")
    for path in schema or []:
        with psycopg.connect(
            settings.pg_conninfo(), password=settings.pg_password.get_secret_value()
        ) as conn:
            conn.execute(path.read_text().encode())
        console.print(f"applied {path}")


@db_app.command("prepare")
def db_prepare(tables: WatchedOpt = None) -> None:
    """Create what the connector needs in the database (tables, replica identity, grants,
    publication) without Kafka Connect: where Strimzi applies the connector. Idempotent."""
    from cdc.connect import prepare_database

    settings, watched = _watched(tables)
    prepare_database(watched, settings)
    console.print(f"database ready for connector {watched.connector.name}")

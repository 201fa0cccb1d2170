"""Settings from the environment (prefix ``CDC_``), an optional ``.env`` file, and the
local stack's endpoint file when one is running."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STACK_DIR = Path(".cdc/stack")
STACK_ENV_FILE = "stack.env"


def stack_dir() -> Path:
    """The local stack's state directory (``CDC_STACK_DIR``, default ``.cdc/stack``)."""
    return Path(os.environ.get("CDC_STACK_DIR", DEFAULT_STACK_DIR)).resolve()


class Settings(BaseSettings):
    """Where the pieces are and how to reach them. Secrets are ``SecretStr``: masked in
    ``repr`` and logs."""

    model_config = SettingsConfigDict(env_prefix="CDC_", extra="ignore")

    watched_tables: Path = Path("cdc.yaml")

    kafka_bootstrap: str = "127.0.0.1:9092"
    connect_url: str = "http://127.0.0.1:8083"
    registry_url: str = "http://127.0.0.1:8080"

    # The application's database, as the role that owns the watched tables.
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_database: str = "app"
    pg_user: str = "app"
    pg_password: SecretStr = SecretStr("")

    # The least-privilege role Debezium connects with.
    debezium_user: str = "cdc_debezium"
    debezium_password: SecretStr = SecretStr("")
    # How Kafka Connect reaches PostgreSQL and the registry, when that differs from here
    # (containers, Kubernetes).
    connect_pg_host: str | None = None
    connect_pg_port: int | None = None
    connect_registry_url: str | None = None
    # A Connect config-provider reference (e.g. ``${env:CDC_DEBEZIUM_PASSWORD}``) to put in
    # the connector config instead of the password itself.
    debezium_password_ref: str | None = None

    def pg_conninfo(self) -> str:
        """libpq conninfo for the application role (password passed separately)."""
        return (
            f"host={self.pg_host} port={self.pg_port} dbname={self.pg_database} user={self.pg_user}"
        )


def load_settings() -> Settings:
    """Settings from the environment, falling back to a running local stack's endpoints."""
    env_file = stack_dir() / STACK_ENV_FILE
    files = (env_file,) if env_file.exists() else ()
    return Settings(_env_file=files)  # type: ignore[call-arg]

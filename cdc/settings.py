"""Settings from the environment (prefix ``CDC_``), an optional ``.env`` file, and the
local stack's endpoint file when one is running."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STACK_DIR = Path(".cdc/stack")
STACK_ENV_FILE = "stack.env"


def stack_dir() -> Path:
    """The local stack's state directory: ``CDC_STACK_DIR``, else ``.cdc/stack``.

    As root, PostgreSQL runs as the ``postgres`` user, which must be able to traverse the
    path; where it cannot (a checkout under a private directory), the default moves to
    ``/var/tmp/cdc-stack-<hash of the working directory>``."""
    if env := os.environ.get("CDC_STACK_DIR"):
        return Path(env).resolve()
    here = DEFAULT_STACK_DIR.resolve()
    if os.geteuid() == 0 and any(not p.stat().st_mode & 0o001 for p in here.parents if p.exists()):
        digest = hashlib.sha256(str(Path.cwd()).encode()).hexdigest()[:8]
        # LocalStack refuses a state directory owned by anyone else.
        return Path(f"/var/tmp/cdc-stack-{digest}")  # noqa: S108
    return here


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

    # Only for `cdc db init` where no one else provisions roles (compose, first boot).
    pg_superuser: str = "postgres"
    pg_superuser_password: SecretStr | None = None

    # The least-privilege role Debezium connects with.
    debezium_user: str = "cdc_debezium"
    debezium_password: SecretStr = SecretStr("")
    # How Kafka Connect reaches PostgreSQL and the registry, when that differs from here
    # (containers, Kubernetes).
    connect_pg_host: str | None = None
    connect_pg_port: int | None = None
    connect_registry_url: str | None = None
    # What the connector config says for the password: by default a reference the Connect
    # worker resolves from its own environment (config.providers=env), so the password is
    # neither stored in Connect's config topic nor returned by its REST API. Set
    # ``debezium_password_inline`` only for a worker without that provider.
    debezium_password_ref: str = "${env:CDC_DEBEZIUM_PASSWORD}"  # noqa: S105 - a reference
    debezium_password_inline: bool = False

    # The consumer.
    handlers: str = "handlers"  # module(s) or package(s) to import, comma-separated
    group_id: str = "cdc"
    dead_letter_topic: str | None = None  # default: <topic_prefix>.dlq
    unrouted: Literal["skip", "dead-letter"] = "skip"  # a record for a table with no handler
    retry_attempts: Annotated[int, Field(ge=1)] = 5
    retry_backoff_s: Annotated[float, Field(gt=0)] = 0.5
    retry_backoff_max_s: Annotated[float, Field(gt=0)] = 30.0
    pg_pool_size: Annotated[int, Field(ge=1)] = 4
    check_at_start: bool = True

    def handler_modules(self) -> list[str]:
        return [m.strip() for m in self.handlers.split(",") if m.strip()]

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

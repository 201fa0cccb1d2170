"""Settings from the environment (prefix ``CDC_``), an optional ``.env`` file, and the
local stack's endpoint file when one is running."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from cdc.logs import KAFKA_LOGGER

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


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
MASK = "********"
_SECRET_KEY = re.compile(r"password|secret|credential|token|jaas|user\.info", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether a config key (ours, librdkafka's or Connect's) names a secret."""
    return _SECRET_KEY.search(key) is not None


def mask_if_secret(key: str, value: str) -> str:
    return MASK if is_secret_key(key) else value


class Settings(BaseSettings):
    """Where the pieces are and how to reach them. Secrets are ``SecretStr``: masked in
    ``repr`` and logs."""

    model_config = SettingsConfigDict(env_prefix="CDC_", extra="ignore")

    watched_tables: Path = Path("cdc.yaml")

    kafka_bootstrap: str = "127.0.0.1:9092"
    # Kafka security, passed to librdkafka as is (security.protocol, sasl.*, ssl.*).
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = None
    kafka_ssl_certificate_location: Path | None = None
    kafka_ssl_key_location: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_endpoint_identification: bool = True
    # Any other librdkafka property, e.g. CDC_KAFKA_EXTRA='{"client.rack": "eu-1a"}'.
    kafka_extra: dict[str, str] = Field(default_factory=dict, repr=False)  # may hold secrets
    # Empty where Kafka Connect is managed elsewhere (Strimzi): `cdc check` then leaves the
    # connector out and `cdc db prepare` does the database half of `cdc connector apply`.
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
    # How long the group waits for a consumer that stopped heartbeating (killed, or cut off)
    # before its partitions move to the others. librdkafka heartbeats from a thread of its
    # own, so a busy handler does not count against it; Kafka's own default is 45 s.
    kafka_session_timeout_ms: Annotated[int, Field(ge=6000)] = 10000
    dead_letter_topic: str | None = None  # default: <topic_prefix>.dlq
    unrouted: Literal["skip", "dead-letter"] = "skip"  # no handler for its table or event type
    retry_attempts: Annotated[int, Field(ge=1)] = 5
    retry_backoff_s: Annotated[float, Field(gt=0)] = 0.5
    retry_backoff_max_s: Annotated[float, Field(gt=0)] = 30.0
    retry_jitter: Annotated[float, Field(ge=0, le=1)] = 0.5  # waits drawn from [1 - it, 1] x
    # An attempt running longer fails and is retried (None: no limit). An async handler is
    # cancelled; a sync one is left to finish on its own thread, its result fenced.
    handler_timeout_s: Annotated[float, Field(gt=0)] | None = None
    concurrency: Annotated[int, Field(ge=1)] = 8  # records of different keys at once
    max_in_flight: Annotated[int, Field(ge=1)] = 1000  # fetching pauses beyond this
    shutdown_deadline_s: Annotated[float, Field(ge=0)] = 20.0  # then in-flight work is dropped
    # The broker refusing our credentials or certificate this long (no broker up meanwhile)
    # stops `cdc run` with an error rather than leaving it running and doing nothing.
    kafka_refused_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    pg_pool_size: Annotated[int, Field(ge=1)] | None = None  # default: concurrency
    ledger_table: str = "cdc_processed_changes"
    ledger_retention_days: Annotated[float, Field(gt=0)] = 14.0
    # How often a running consumer prunes the ledger (0: only when it starts using it).
    ledger_prune_interval_s: Annotated[float, Field(ge=0)] = 3600.0
    http_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from outside the pod
    http_port: Annotated[int, Field(ge=0, le=65535)] | None = 9400  # None: no endpoint
    check_at_start: bool = True
    # How often the consumer asks Kafka Connect and PostgreSQL whether Debezium still
    # captures its tables (0: never); what stops it is logged and fails /readyz.
    capture_check_interval_s: Annotated[float, Field(ge=0)] = 30.0
    # The web console (`cdc console`, `cdc run --console`): off unless asked for, on loopback
    # unless told otherwise, and never without its token (best from CDC_SECRETS_DIR).
    console_token: SecretStr | None = None
    console_host: str = "127.0.0.1"
    console_port: Annotated[int, Field(ge=0, le=65535)] = 9401
    # WAL the replication slot may hold before `cdc check` and the consumer warn about it.
    slot_wal_warn_bytes: Annotated[int, Field(gt=0)] = 1024**3

    def kafka_config(self, **overrides: object) -> dict[str, object]:
        """librdkafka properties for every client we make: endpoint and security."""
        config: dict[str, object] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
            # librdkafka's own lines through our logs, not raw on stderr.
            "logger": KAFKA_LOGGER,
        }
        optional: dict[str, object | None] = {
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": _reveal(self.kafka_sasl_password),
            "ssl.ca.location": self.kafka_ssl_ca_location,
            "ssl.certificate.location": self.kafka_ssl_certificate_location,
            "ssl.key.location": self.kafka_ssl_key_location,
            "ssl.key.password": _reveal(self.kafka_ssl_key_password),
        }
        config.update({k: str(v) for k, v in optional.items() if v is not None})
        if "SSL" in self.kafka_security_protocol:
            config["ssl.endpoint.identification.algorithm"] = (
                "https" if self.kafka_ssl_endpoint_identification else "none"
            )
        config.update(self.kafka_extra)
        config.update(overrides)
        return config

    def masked(self) -> dict[str, object]:
        """Every setting, secrets masked: safe to print or log."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = MASK if value.get_secret_value() else ""
            elif name == "kafka_extra":
                value = {k: mask_if_secret(k, v) for k, v in value.items()}
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out

    def handler_modules(self) -> list[str]:
        return [m.strip() for m in self.handlers.split(",") if m.strip()]

    def pg_conninfo(self) -> str:
        """libpq conninfo for the application role (password passed separately)."""
        return (
            f"host={self.pg_host} port={self.pg_port} dbname={self.pg_database} user={self.pg_user}"
        )


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def load_settings() -> Settings:
    """Settings from, first to last: the environment; files in ``CDC_SECRETS_DIR`` (one per
    setting, as Kubernetes mounts a Secret); ``CDC_ENV_FILE`` (default ``.env``); and a
    running local stack's endpoint file."""
    env_file = Path(os.environ.get("CDC_ENV_FILE", ".env"))
    stack_env = stack_dir() / STACK_ENV_FILE
    # Later files win over earlier ones; the environment wins over both.
    files = tuple(f for f in (stack_env, env_file) if f.is_file())
    secrets = os.environ.get("CDC_SECRETS_DIR")
    return Settings(_env_file=files, _secrets_dir=secrets)  # type: ignore[call-arg]

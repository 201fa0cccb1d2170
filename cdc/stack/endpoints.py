"""What a running stack offers, whichever way it was started."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

from cdc.errors import StackError
from cdc.settings import Settings


@dataclass(frozen=True)
class StackEndpoints:
    kafka_bootstrap: str
    connect_url: str
    registry_url: str
    pg_host: str
    pg_port: int
    pg_superuser_password: str = field(repr=False)
    app_database: str
    app_user: str
    app_password: str = field(repr=False)
    debezium_user: str
    debezium_password: str = field(repr=False)
    # How Connect reaches PostgreSQL and the registry (differs inside a container network).
    connect_pg_host: str | None = None
    connect_pg_port: int | None = None
    connect_registry_url: str | None = None
    # The broker's TLS listener and its SASL/SCRAM-over-TLS one, with the CA that signed
    # their certificate (PEM) and the SCRAM user; None where the stack has none.
    kafka_tls_bootstrap: str | None = None
    kafka_sasl_bootstrap: str | None = None
    kafka_ca_location: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    # Where the components write their logs (the local stack's ``logs/``).
    log_dir: str | None = None

    def _values(self) -> dict[str, object]:
        return {
            "kafka_bootstrap": self.kafka_bootstrap,
            "connect_url": self.connect_url,
            "registry_url": self.registry_url,
            "pg_host": self.pg_host,
            "pg_port": self.pg_port,
            "pg_database": self.app_database,
            "pg_user": self.app_user,
            "pg_password": SecretStr(self.app_password),
            "debezium_user": self.debezium_user,
            "debezium_password": SecretStr(self.debezium_password),
            "connect_pg_host": self.connect_pg_host,
            "connect_pg_port": self.connect_pg_port,
            "connect_registry_url": self.connect_registry_url,
        }

    def kafka_security(self, protocol: Literal["SSL", "SASL_SSL"]) -> dict[str, object]:
        """Settings (``Settings`` field names) for a client on the TLS listener (``SSL``) or
        the SCRAM one (``SASL_SSL``), verifying the broker's certificate and host name."""
        bootstrap = self.kafka_tls_bootstrap if protocol == "SSL" else self.kafka_sasl_bootstrap
        if bootstrap is None or self.kafka_ca_location is None:
            raise StackError("kafka", f"this stack has no {protocol} listener")
        out: dict[str, object] = {
            "kafka_bootstrap": bootstrap,
            "kafka_security_protocol": protocol,
            "kafka_ssl_ca_location": self.kafka_ca_location,
            "kafka_ssl_endpoint_identification": True,
        }
        if protocol == "SASL_SSL":
            if self.kafka_sasl_username is None or self.kafka_sasl_password is None:
                raise StackError("kafka", "this stack has no SCRAM user")
            out |= {
                "kafka_sasl_mechanism": self.kafka_sasl_mechanism,
                "kafka_sasl_username": self.kafka_sasl_username,
                "kafka_sasl_password": SecretStr(self.kafka_sasl_password),
            }
        return out

    def settings(self, **overrides: object) -> Settings:
        """Settings for a consumer on this stack; its HTTP endpoint on any free port, since
        tests run several consumers side by side."""
        return Settings.model_validate({"http_port": 0} | self._values() | overrides)

    def env(self, protocol: Literal["SSL", "SASL_SSL"] | None = None) -> dict[str, str]:
        """``CDC_*`` variables that point ``cdc`` commands at this stack (and nothing else);
        with ``protocol``, at that listener of the broker."""
        values = self._values() | (self.kafka_security(protocol) if protocol else {})
        out: dict[str, str] = {}
        for name, value in values.items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            out[f"CDC_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        return out

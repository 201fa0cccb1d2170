"""What a running stack offers, whichever way it was started."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from cdc.settings import Settings


@dataclass(frozen=True)
class StackEndpoints:
    kafka_bootstrap: str
    connect_url: str
    registry_url: str
    pg_host: str
    pg_port: int
    pg_superuser_password: str
    app_database: str
    app_user: str
    app_password: str
    debezium_user: str
    debezium_password: str
    # How Connect reaches PostgreSQL and the registry (differs inside a container network).
    connect_pg_host: str | None = None
    connect_pg_port: int | None = None
    connect_registry_url: str | None = None

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

    def settings(self, **overrides: object) -> Settings:
        """Settings for a consumer on this stack; its HTTP endpoint on any free port, since
        tests run several consumers side by side."""
        return Settings.model_validate({"http_port": 0} | self._values() | overrides)

    def env(self) -> dict[str, str]:
        """``CDC_*`` variables that point ``cdc`` commands at this stack (and nothing else)."""
        out: dict[str, str] = {}
        for name, value in self._values().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            out[f"CDC_{name.upper()}"] = str(value)
        return out

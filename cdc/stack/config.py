"""Component configuration shared by the local processes and the containers, so both run
the same stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

# What logical decoding needs; every way of running PostgreSQL sets these.
PG_REPLICATION_SETTINGS: dict[str, str] = {
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "wal_sender_timeout": "60s",
}
# Throwaway clusters (local stack, tests) trade durability across OS crashes for speed;
# docker compose keeps its data in a volume, so it keeps the defaults. synchronous_commit
# stays on: without it a killed PostgreSQL loses commits it already confirmed (the crash drill
# lost a handler's last writes that way), and with fsync off it costs next to nothing.
PG_SETTINGS: dict[str, str] = PG_REPLICATION_SETTINGS | {
    "fsync": "off",
    "full_page_writes": "off",
}

APP_DATABASE = "app"
APP_USER = "app"
DEBEZIUM_USER = "cdc_debezium"


@dataclass(frozen=True)
class DatabaseRoles:
    """The application's database and role, and Debezium's least-privilege role."""

    app_password: str = field(repr=False)
    debezium_password: str = field(repr=False)
    database: str = APP_DATABASE
    app_user: str = APP_USER
    debezium_user: str = DEBEZIUM_USER


def bootstrap_postgres(conn: psycopg.Connection[Any], roles: DatabaseRoles) -> None:
    """As superuser (autocommit): the application role and database, and the Debezium role
    with REPLICATION LOGIN and nothing more (a role that existed with more is cut back);
    table grants come from ``connector apply``."""
    for user in (roles.app_user, roles.debezium_user):
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
    conn.execute(
        sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
            sql.Identifier(roles.app_user), sql.Literal(roles.app_password)
        )
    )
    conn.execute(
        sql.SQL(
            "ALTER ROLE {} WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE "
            "NOBYPASSRLS PASSWORD {}"
        ).format(sql.Identifier(roles.debezium_user), sql.Literal(roles.debezium_password))
    )
    exists = conn.execute(
        "SELECT 1 FROM pg_database WHERE datname = %s", (roles.database,)
    ).fetchone()
    if not exists:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(roles.database), sql.Identifier(roles.app_user)
            )
        )


# Clients authenticate on the SASL_SSL listener with this mechanism; its users are SCRAM
# credentials in the cluster metadata (made with the Admin API).
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_USER = "cdc"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclass(frozen=True)
class BrokerSecurity:
    """TLS (``SSL``) and SASL/SCRAM over TLS (``SASL_SSL``) listeners beside ``PLAINTEXT``,
    which the controller, inter-broker traffic and Kafka Connect keep using."""

    ssl_port: int
    sasl_port: int
    key: str = field(repr=False)  # PEM, PKCS#8
    certificate_chain: str  # PEM: the broker's certificate, then the CA's


# The keys `security` adds or changes: the rest of the broker is configured the same with or
# without it (docker compose, which has no TLS listener, is compared on the others).
SECURITY_KEYS = frozenset(
    {
        "listeners",
        "advertised.listeners",
        "listener.security.protocol.map",
        "ssl.keystore.type",
        "ssl.keystore.key",
        "ssl.keystore.certificate.chain",
        "ssl.client.auth",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms",
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config",
    }
)


def broker_properties(
    *,
    port: int,
    controller_port: int,
    host: str = "127.0.0.1",
    advertised_host: str = "127.0.0.1",
    log_dir: str,
    security: BrokerSecurity | None = None,
) -> dict[str, str]:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{advertised_host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{advertised_host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": log_dir,
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    if security is None:
        return props
    ssl, sasl = security.ssl_port, security.sasl_port
    props["listeners"] += f",SSL://{host}:{ssl},SASL_SSL://{host}:{sasl}"
    props["advertised.listeners"] += (
        f",SSL://{advertised_host}:{ssl},SASL_SSL://{advertised_host}:{sasl}"
    )
    props["listener.security.protocol.map"] += ",SSL:SSL,SASL_SSL:SASL_SSL"
    mechanism = SCRAM_MECHANISM.lower()
    return props | {
        # The PEM text itself (a PEM key store file needs an encrypted key, see cdc.stack.tls).
        "ssl.keystore.type": "PEM",
        "ssl.keystore.key": security.key,
        "ssl.keystore.certificate.chain": security.certificate_chain,
        # Clients prove who they are with SCRAM (SASL_SSL) or not at all (SSL): no mTLS.
        "ssl.client.auth": "none",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"listener.name.sasl_ssl.{mechanism}.sasl.jaas.config": f"{SCRAM_LOGIN_MODULE} required;",
    }


def connect_worker_properties(
    *, bootstrap: str, rest_host: str, rest_port: int, plugin_path: str | None
) -> dict[str, str]:
    props = {
        "bootstrap.servers": bootstrap,
        "group.id": "cdc-connect",
        "config.storage.topic": "_cdc_connect_configs",
        "offset.storage.topic": "_cdc_connect_offsets",
        "status.storage.topic": "_cdc_connect_status",
        "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1",
        "status.storage.replication.factor": "1",
        "offset.storage.partitions": "1",
        "status.storage.partitions": "1",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "listeners": f"http://{rest_host}:{rest_port}",
        "rest.advertised.host.name": rest_host,
        "rest.advertised.port": str(rest_port),
        # Flush source offsets (the LSN Debezium confirms to PostgreSQL) every second.
        "offset.flush.interval.ms": "1000",
        # Secrets stay out of connector configs: ${env:NAME} is resolved by the worker.
        "config.providers": "env",
        "config.providers.env.class": (
            "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
        ),
        # Connector configs may read this one variable and no other.
        "config.providers.env.param.allowlist.pattern": "^CDC_DEBEZIUM_PASSWORD$",
        "topic.creation.enable": "true",
    }
    if plugin_path:
        props["plugin.path"] = plugin_path
    return props


def registry_properties(*, host: str, port: int) -> dict[str, str]:
    return {
        "quarkus.http.host": host,
        "quarkus.http.port": str(port),
    }

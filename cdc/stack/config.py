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


@dataclass(frozen=True)
class Replication:
    """How many copies of a partition the cluster keeps (``factor``) and how many must have a
    write before it is acknowledged to an ``acks=all`` producer (``min_insync``)."""

    factor: int = 1
    min_insync: int = 1

    @classmethod
    def for_brokers(cls, brokers: int) -> Replication:
        """What a cluster of ``brokers`` allows: three copies where it can, and with three,
        two of them in sync, so one broker may be lost without losing or refusing a write."""
        factor = max(1, min(3, brokers))
        return cls(factor, 2 if factor >= 3 else 1)


def replication_properties(replication: Replication) -> dict[str, str]:
    """The broker settings that replicate every topic made without a factor of its own
    (the group offsets, transaction state, ours and Connect's) as ``replication`` says: the
    one list the local cluster, docker compose and a Strimzi ``Kafka`` take."""
    factor, min_isr = str(replication.factor), str(replication.min_insync)
    props = {
        "offsets.topic.replication.factor": factor,
        "transaction.state.log.replication.factor": factor,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": factor,
        "share.coordinator.state.topic.min.isr": min_isr,
        "min.insync.replicas": min_isr,
    }
    if replication.factor > 1:
        # Kafka's own default is 1 whatever the cluster's size.
        props["default.replication.factor"] = factor
    return props


# A cluster's controller quorum: the first nodes are brokers and controllers at once.
CONTROLLERS = 3


def node_names(base: str, count: int) -> list[str]:
    """``base`` alone, or ``base-1`` .. ``base-<count>`` for several."""
    return [base] if count == 1 else [f"{base}-{i}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class Topology:
    """How many Kafka nodes and Connect workers the stack has, and the settings that follow
    from it wherever the stack runs (local processes, docker compose, Strimzi)."""

    brokers: int = 1
    connect_workers: int = 1
    exactly_once: bool = False  # the workers' exactly-once source support

    def problem(self) -> str | None:
        """Why this topology cannot be made, or None."""
        if self.brokers < 1 or self.brokers == 2 or self.connect_workers < 1:
            return (
                f"{self.brokers} broker(s) and {self.connect_workers} Connect worker(s): "
                "brokers must be 1, or 3 or more (a quorum of 3 controllers), and workers "
                "1 or more"
            )
        return None

    @property
    def clustered(self) -> bool:
        """More than the single broker and worker `make run` has."""
        return (self.brokers, self.connect_workers) != (1, 1)

    @property
    def replication(self) -> Replication:
        return Replication.for_brokers(self.brokers)

    @property
    def connect_replication_factor(self) -> int:
        """Connect's internal topics: a cluster's default.replication.factor (-1), with its
        min.insync.replicas; a single broker's one copy."""
        return -1 if self.brokers > 1 else 1

    @property
    def rebalance_delay_ms(self) -> int | None:
        """A worker lost hands its tasks on within seconds, not Connect's 5 minutes."""
        return 10_000 if self.connect_workers > 1 else None


# The replicated cluster the deploy outputs describe (compose's deploy/compose.cluster.yml,
# `cdc deploy kubernetes --replicated`), as `cdc stack up --brokers 3 --connect-workers 2`.
REPLICATED = Topology(brokers=3, connect_workers=2)


@dataclass(frozen=True)
class Quorum:
    """The KRaft controllers of a cluster, by node id: ``host:port`` of each one's
    CONTROLLER listener."""

    controllers: dict[int, str]

    def bootstrap(self) -> str:
        return ",".join(self.controllers.values())


def broker_properties(
    *,
    port: int,
    controller_port: int | None,
    host: str = "127.0.0.1",
    advertised_host: str = "127.0.0.1",
    log_dir: str,
    security: BrokerSecurity | None = None,
    node_id: int = 1,
    quorum: Quorum | None = None,
    replication: Replication = Replication(),
    proxied: tuple[int, int] | None = None,
) -> dict[str, str]:
    """One KRaft node: broker and controller (``controller_port``) or broker only (None).
    Alone (no ``quorum``) it is its own quorum. Every topic made without a replication factor
    of its own, ours and Connect's, gets the cluster's (``replication``). ``proxied``: a
    PLAINTEXT listener on the first port advertised on the second, where a proxy may relay
    to it (the network drills put faults between the consumer and the brokers there)."""
    quorum = quorum or Quorum({node_id: f"{advertised_host}:{controller_port}"})
    listeners = f"PLAINTEXT://{host}:{port}"
    advertised = f"PLAINTEXT://{advertised_host}:{port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if controller_port is not None:
        listeners += f",CONTROLLER://{host}:{controller_port}"
    if proxied is not None:
        listeners += f",PROXIED://{host}:{proxied[0]}"
        advertised += f",PROXIED://{advertised_host}:{proxied[1]}"
        protocols += ",PROXIED:PLAINTEXT"
    props = {
        "process.roles": "broker,controller" if controller_port is not None else "broker",
        "node.id": str(node_id),
        "controller.quorum.bootstrap.servers": quorum.bootstrap(),
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": log_dir,
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        **replication_properties(replication),
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
    *,
    bootstrap: str,
    rest_host: str,
    rest_port: int,
    plugin_path: str | None,
    replication_factor: int = 1,
    rebalance_delay_ms: int | None = None,
    exactly_once: bool = False,
) -> dict[str, str]:
    """A distributed worker; every worker with the same topics is one group. Its internal
    topics get ``replication_factor`` (-1: the cluster's default.replication.factor).
    ``rebalance_delay_ms``: how long the tasks of a worker gone from the group wait for it
    before they move to the others (Connect's default: 5 minutes). ``exactly_once``: source
    tasks may deliver exactly once (`connector.exactly_once` in ``cdc.yaml``)."""
    rf = str(replication_factor)
    props = {
        "bootstrap.servers": bootstrap,
        "group.id": "cdc-connect",
        "config.storage.topic": "_cdc_connect_configs",
        "offset.storage.topic": "_cdc_connect_offsets",
        "status.storage.topic": "_cdc_connect_status",
        "config.storage.replication.factor": rf,
        "offset.storage.replication.factor": rf,
        "status.storage.replication.factor": rf,
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
        # Debezium's records are written once and only once acknowledged by every in-sync
        # replica: a broker lost after the ack loses none of them, and a retried send after
        # a lost ack is not written twice.
        "producer.acks": "all",
        "producer.enable.idempotence": "true",
    }
    if exactly_once:
        # Source tasks write their records and offsets in one transaction per poll
        # (KIP-618); a connector asks for it with exactly.once.support=required.
        props["exactly.once.source.support"] = "enabled"
    if plugin_path:
        props["plugin.path"] = plugin_path
    if rebalance_delay_ms is not None:
        props["scheduled.rebalance.max.delay.ms"] = str(rebalance_delay_ms)
    return props


def registry_properties(*, host: str, port: int) -> dict[str, str]:
    return {
        "quarkus.http.host": host,
        "quarkus.http.port": str(port),
    }

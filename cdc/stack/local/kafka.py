"""A Kafka node (KRaft, broker and controller in one) as a local JVM, with its TLS and
SCRAM listeners beside PLAINTEXT."""

from __future__ import annotations

import base64
import signal
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from cdc.errors import StackError
from cdc.stack import config, probes, tls
from cdc.stack.local.processes import HOST, Processes, write_private

log = structlog.get_logger("cdc.stack")


class KafkaNode:
    """Node ``node_id`` of the cluster whose nodes are ``peers`` (by name, node 1 first):
    alone, its own quorum; in a cluster of three or more, the first three are the
    controllers."""

    stop_signal = signal.SIGTERM

    def __init__(self, procs: Processes, name: str, node_id: int, peers: Sequence[str]) -> None:
        self.procs = procs
        self.name = name
        self.node_id = node_id
        self.peers = tuple(peers)

    @property
    def clustered(self) -> bool:
        return len(self.peers) > 1

    @property
    def controllers(self) -> tuple[str, ...]:
        return self.peers[: config.CONTROLLERS]

    @property
    def home(self) -> Path:
        """Its configuration and data directory."""
        return self.procs.dir / self.name

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.procs.state.ports[self.name]}"

    def start(self, home: Path) -> None:
        procs = self.procs
        port = procs.port(self.name)
        key, chain, _ = tls_files(procs)
        security = config.BrokerSecurity(
            ssl_port=procs.port(f"{self.name}-ssl"),
            sasl_port=procs.port(f"{self.name}-sasl"),
            key=key.read_text(),
            certificate_chain=chain.read_text(),
        )
        props = config.broker_properties(
            port=port,
            log_dir=str(self.home / "data"),
            security=security,
            # The proxy's port is only reserved: a drill's proxy takes it.
            proxied=(procs.port(f"{self.name}-proxied"), procs.reserve(f"proxy-{self.name}")),
            **self._cluster_properties(),
        )
        path = self.home / "server.properties"
        self.home.mkdir(exist_ok=True)
        # It holds the broker's private key.
        write_private(path, "".join(f"{k}={_properties_value(v)}\n" for k, v in props.items()))
        cp = ["-cp", f"{home / 'lib'}/*"]
        if not (self.home / "data" / "meta.properties").exists():
            procs.state.cluster_id = procs.state.cluster_id or kafka_cluster_id()
            fmt = [
                *cp,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={procs.state.cluster_id}",
                "-c",
                str(path),
                *self._quorum_format(),
            ]
            proc = procs.run(procs.java("256m", fmt, f"{self.name}-format"), self.name)
            if proc.returncode != 0:
                raise StackError(self.name, "storage format failed", proc.stdout + proc.stderr)
        heap = "512m" if self.clustered else "768m"  # three of them share the machine
        procs.spawn(self.name, procs.java(heap, [*cp, "kafka.Kafka", str(path)], self.name))

    def _cluster_properties(self) -> dict[str, Any]:
        """Its place in the cluster: node id, controller listener, quorum, replication."""
        procs = self.procs
        if not self.clustered:
            return {"controller_port": procs.port(f"{self.name}-controller")}
        # The quorum's addresses are in every node's configuration and in the metadata log:
        # they stay as first reserved, whoever holds them now.
        quorum = {
            i: f"{HOST}:{procs.reserve(f'{peer}-controller')}"
            for i, peer in enumerate(self.controllers, 1)
        }
        is_controller = self.name in self.controllers
        return {
            "controller_port": procs.reserve(f"{self.name}-controller") if is_controller else None,
            "node_id": self.node_id,
            "quorum": config.Quorum(quorum),
            "replication": config.Replication.for_brokers(len(self.peers)),
        }

    def _quorum_format(self) -> list[str]:
        """How the storage tool makes the initial quorum: a node alone is one; in a cluster
        every node is formatted with the same controllers (KIP-853's dynamic quorum), each
        named with the directory id its metadata log will have."""
        if not self.clustered:
            return ["--standalone"]
        ids, ports = self.procs.state.directory_ids, self.procs.state.ports
        voters = [
            f"{i}@{HOST}:{ports[f'{peer}-controller']}:{ids.setdefault(peer, kafka_cluster_id())}"
            for i, peer in enumerate(self.controllers, 1)
        ]
        return ["--initial-controllers", ",".join(voters)]

    def ready(self) -> bool:
        return probes.kafka_ready(self.bootstrap, node_id=self.node_id)

    def has_secure_listeners(self) -> bool:
        """Whether the running broker was started with the TLS and SCRAM listeners (one
        started by an older ``up`` has the PLAINTEXT one only)."""
        try:
            return "SASL_SSL://" in (self.home / "server.properties").read_text()
        except OSError:
            return False

    def secure_ready(self) -> bool:
        """Both secure listeners answer, with the CA verified and the SCRAM user known."""
        p, ca = self.procs.state.ports, str(tls_files(self.procs)[2])
        tls_conf = {"security.protocol": "SSL", "ssl.ca.location": ca}
        sasl_conf = {
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": ca,
            "sasl.mechanism": config.SCRAM_MECHANISM,
            "sasl.username": config.SCRAM_USER,
            "sasl.password": self.procs.state.secrets["kafka_scram"],
        }
        return probes.kafka_ready(
            f"{HOST}:{p[f'{self.name}-ssl']}", tls_conf
        ) and probes.kafka_ready(f"{HOST}:{p[f'{self.name}-sasl']}", sasl_conf)


def tls_files(procs: Processes) -> tuple[Path, Path, Path]:
    """The broker's key, its certificate chain, the CA certificate."""
    d = procs.dir / "tls"
    return d / "server-key.pem", d / "server-chain.pem", d / "ca.pem"


def ensure_tls(procs: Processes) -> bool:
    """The CA certificate and the broker's key store, made once and again only near their
    end; return whether they were (re)made. The CA's key is never written down: it signs the
    one broker certificate and is gone."""
    key, chain, ca_file = tls_files(procs)
    if not tls.needs_renewal(key, chain, ca_file):
        return False
    ca_file.parent.mkdir(mode=0o700, exist_ok=True)
    ca = tls.make_authority()
    key_pem, chain_pem = tls.server_keystore(ca)
    write_private(key, key_pem.decode())
    write_private(chain, chain_pem.decode())
    write_private(ca_file, ca.pem.decode())
    log.info("stack.tls", ca=str(ca_file))
    return True


def ensure_scram_user(procs: Processes, bootstrap: str) -> None:
    """The SCRAM user of the SASL_SSL listener, with the stack's password; an upsert, so
    every ``up`` leaves it as the state file says. Made over PLAINTEXT (loopback)."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap})
    upsert = UserScramCredentialUpsertion(
        config.SCRAM_USER,
        ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
        procs.state.secrets["kafka_scram"].encode(),
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        try:
            future.result()
        except Exception as exc:
            # The error names the user, never the password.
            raise StackError("kafka", f"cannot create the SCRAM user: {exc}") from exc


def _properties_value(value: str) -> str:
    """A value as java.util.Properties reads it back: backslashes and line breaks escaped
    (the PEM texts span lines)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def kafka_cluster_id() -> str:
    """16 random bytes, base64url, as ``kafka-storage random-uuid`` makes them: never with a
    leading '-', which the storage tool would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id

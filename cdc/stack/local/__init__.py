"""The stack as local processes on loopback: free ports, one state directory, one log file
per component. ``up`` is idempotent and waits for readiness; ``down`` leaves nothing behind.

Each component starts in a module of its own (``postgres``, ``kafka``, ``connect``,
``registry``); ``processes`` is what they share."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from functools import partial
from pathlib import Path

import structlog

from cdc.errors import StackError
from cdc.settings import STACK_ENV_FILE
from cdc.stack import config
from cdc.stack.endpoints import StackEndpoints
from cdc.stack.jvm import jvm_home
from cdc.stack.local.connect import ConnectWorker
from cdc.stack.local.kafka import (
    KafkaNode,
    ensure_scram_user,
    ensure_tls,
    kafka_cluster_id,
    tls_files,
)
from cdc.stack.local.postgres import PG_BIN, Postgres
from cdc.stack.local.processes import (
    HOST,
    Component,
    Processes,
    StackState,
    free_port,
    port_open,
    safe,
    write_private,
)
from cdc.stack.local.registry import Registry

__all__ = [
    "COMPONENTS",
    "PG_BIN",
    "LocalStack",
    "StackState",
    "free_port",
    "kafka_cluster_id",
    "port_open",
]

log = structlog.get_logger("cdc.stack")

# The single-node stack's components; a cluster's Kafka nodes are kafka-1, kafka-2... and its
# Connect workers connect-1, connect-2...
COMPONENTS = ("postgres", "kafka", "connect", "registry")


class LocalStack:
    """PostgreSQL, Kafka (one node, or a KRaft cluster), Kafka Connect (one worker or a
    group of them) and Apicurio Registry under one state directory, which remembers the
    topology it was made with."""

    def __init__(self, state_dir: Path) -> None:
        # absolute(), not resolve(): a symlinked state directory is refused, not followed.
        self.procs = Processes(state_dir.absolute())
        self.dir = self.procs.dir
        self.logs = self.procs.logs
        self.postgres = Postgres(self.procs)
        self.registry = Registry(self.procs)
        self._build()

    def _build(self) -> None:
        """The Kafka nodes and Connect workers of the state's topology."""
        state = self.state
        topology = config.Topology(state.brokers, state.connect_workers, state.exactly_once)
        names = config.node_names("kafka", topology.brokers)
        self.kafka_nodes = [KafkaNode(self.procs, n, i, names) for i, n in enumerate(names, 1)]
        clustered = topology.clustered
        self.connect_workers = [
            ConnectWorker(
                self.procs,
                name,
                lambda: self.bootstrap,
                replication_factor=topology.connect_replication_factor,
                # A worker killed in a drill hands its tasks on within seconds, not minutes.
                rebalance_delay_ms=topology.rebalance_delay_ms,
                exactly_once=topology.exactly_once,
                heap="512m" if clustered else "1g",  # six JVMs share the machine
            )
            for name in config.node_names("connect", topology.connect_workers)
        ]

    @property
    def state(self) -> StackState:
        return self.procs.state

    @property
    def bootstrap(self) -> str:
        """Every broker's PLAINTEXT address."""
        return self._addresses("")

    def _addresses(self, listener: str) -> str:
        ports = self.state.ports
        return ",".join(f"{HOST}:{ports.get(n.name + listener, 0)}" for n in self.kafka_nodes)

    def components(self) -> dict[str, Component]:
        """Every component by name, in start order."""
        parts: list[Component] = [
            self.postgres,
            *self.kafka_nodes,
            *self.connect_workers,
            self.registry,
        ]
        return {c.name: c for c in parts}

    # -- public API -------------------------------------------------------------------
    def up(
        self,
        timeout: float = 240.0,
        *,
        brokers: int | None = None,
        connect_workers: int | None = None,
        exactly_once: bool | None = None,
    ) -> StackEndpoints:
        """Start what is not running and wait until all is ready. ``brokers`` and
        ``connect_workers`` (None: as the stack was made, or one) are fixed when the stack
        is first made; ``exactly_once`` (the workers' exactly-once source support; None: as
        before, or off) whenever the workers are stopped."""
        self._prepare_dirs()
        self._set_topology(brokers, connect_workers, exactly_once)
        home = jvm_home()  # a first fetch does not count against the start-up deadline
        started = time.monotonic()
        self._ensure_secrets()
        procs = self.procs
        if ensure_tls(procs):  # the brokers still present the certificate they had
            procs.stop_together({n.name: n.stop_signal for n in self.kafka_nodes}, 30)
        deadline = started + timeout
        # The JVMs start slowly; start the independent ones together.
        first: list[Component] = [self.postgres, *self.kafka_nodes, self.registry]
        for part in first:
            procs.ensure(part.name, partial(part.start, home))
        for node in self.kafka_nodes:
            procs.wait(node.name, node.ready, deadline)
        ensure_scram_user(procs, self.bootstrap)
        if self.kafka_nodes[0].has_secure_listeners():
            for node in self.kafka_nodes:
                procs.wait(node.name, node.secure_ready, deadline)
        else:
            log.warning(
                "stack.kafka.no_tls",
                hint="this broker started before it had TLS and SCRAM listeners; "
                "`cdc stack down` then `cdc stack up` adds them",
            )
        for worker in self.connect_workers:
            procs.ensure(worker.name, partial(worker.start, home))
        procs.wait("postgres", self.postgres.ready, deadline)
        self.postgres.bootstrap()
        procs.wait("registry", self.registry.ready, deadline)
        for worker in self.connect_workers:
            procs.wait(worker.name, worker.ready, deadline)
        endpoints = self.endpoints()
        self._write_env(endpoints)
        log.info("stack.up", dir=str(self.dir), seconds=round(time.monotonic() - started, 1))
        return endpoints

    def _set_topology(
        self, brokers: int | None, workers: int | None, exactly_once: bool | None = None
    ) -> None:
        """Take the topology asked for, where it can be: Kafka's nodes are formatted for
        theirs, and running workers are not renamed or reconfigured."""
        state = self.state
        brokers = state.brokers if brokers is None else brokers
        workers = state.connect_workers if workers is None else workers
        eos = state.exactly_once if exactly_once is None else exactly_once
        if problem := config.Topology(brokers, workers).problem():
            raise StackError("stack", problem)
        if (brokers, workers, eos) == (state.brokers, state.connect_workers, state.exactly_once):
            return
        made = brokers != state.brokers and bool(state.cluster_id)
        nodes: list[Component] = [*self.kafka_nodes, *self.connect_workers]
        running = [n.name for n in nodes if self.procs.alive(n.name)]
        if made or running:
            raise StackError(
                "stack",
                f"{self.dir} holds a stack of {state.brokers} broker(s) and "
                f"{state.connect_workers} Connect worker(s)"
                + (" with exactly-once source support" if state.exactly_once else "")
                + (f" ({', '.join(running)} running)" if running else "")
                + f"; for {brokers} and {workers}"
                + (" with exactly-once source support" if eos else "")
                + ": `cdc stack down"
                + (" --destroy`" if made else "`")
                + " first, or another CDC_STACK_DIR",
            )
        state.brokers, state.connect_workers, state.exactly_once = brokers, workers, eos
        self._build()

    def down(self, timeout: float = 30.0) -> None:
        tiers: list[list[Component]] = [
            [self.registry],
            list(self.connect_workers),
            list(self.kafka_nodes),
            [self.postgres],
        ]
        for tier in tiers:
            self.procs.stop_together({p.name: p.stop_signal for p in tier}, timeout)
        self.state.pids.clear()
        self.procs.save() if self.dir.exists() else None

    def restart(
        self, name: str, *, crash: bool = False, down_s: float = 0.0, timeout: float = 180.0
    ) -> None:
        """Stop one component (``crash``: SIGKILL, no clean shutdown), leave it down for
        ``down_s`` and start it again on the same port and data; return once it is ready.
        For fault drills."""
        part = self._component(name)
        home = jvm_home()
        self.stop(name, crash=crash)
        # A killed JVM's threads outlive its main one for a moment, and its ports with them:
        # starting again before they are free would move the component to new ports.
        ports = self.procs.ports_of(name)
        deadline = time.monotonic() + 30
        while any(port_open(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(down_s)
        self.procs.ensure(name, partial(part.start, home))
        self.procs.wait(name, part.ready, time.monotonic() + timeout)

    def stop(self, name: str, *, crash: bool = False) -> None:
        """Stop one component: cleanly, or (``crash``) with SIGKILL at once."""
        part = self._component(name)
        self.procs.stop(name, 0 if crash else 30, part.stop_signal)

    def _component(self, name: str) -> Component:
        parts = self.components()
        if name not in parts:
            raise StackError(name, f"not a component: one of {', '.join(parts)}")
        return parts[name]

    def status(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for name, part in self.components().items():
            alive = self.procs.alive(name)
            out[name] = {
                "pid": self.state.pids.get(name) if alive else None,
                "port": self.state.ports.get(name),
                "running": alive,
                "ready": alive and safe(part.ready),
                "log": str(self.procs.log_file(name)),
            }
        return out

    def endpoints(self) -> StackEndpoints:
        p, s = self.state.ports, self.state.secrets
        secure = self.kafka_nodes[0].has_secure_listeners()
        return StackEndpoints(
            kafka_bootstrap=self.bootstrap,
            # Every worker's: any of them answers for the group, and a client goes on to the
            # next while one is down.
            connect_url=",".join(w.url for w in self.connect_workers),
            registry_url=self.registry.url,
            pg_host=HOST,
            pg_port=p["postgres"],
            pg_superuser_password=s["postgres"],
            app_database=config.APP_DATABASE,
            app_user=config.APP_USER,
            app_password=s["app"],
            debezium_user=config.DEBEZIUM_USER,
            debezium_password=s["debezium"],
            kafka_tls_bootstrap=self._addresses("-ssl") if secure else None,
            kafka_sasl_bootstrap=self._addresses("-sasl") if secure else None,
            kafka_ca_location=str(tls_files(self.procs)[2]) if secure else None,
            kafka_sasl_mechanism=config.SCRAM_MECHANISM if secure else None,
            kafka_sasl_username=config.SCRAM_USER if secure else None,
            kafka_sasl_password=s["kafka_scram"] if secure else None,
            log_dir=str(self.logs),
        )

    def destroy(self) -> None:
        """Stop everything and delete the state directory."""
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- preparation ------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        if self.dir.is_symlink():
            raise StackError("stack", f"{self.dir} is a symbolic link; refusing to use it")
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.dir.lstat().st_uid != os.geteuid():
            raise StackError("stack", f"{self.dir} belongs to another user; refusing to use it")
        self.logs.mkdir(exist_ok=True)
        pg_user = self.procs.pg_user
        self.dir.chmod(0o711 if pg_user else 0o700)
        if pg_user:
            blocked = [p for p in self.dir.parents if not os.stat(p).st_mode & 0o001]
            if blocked:
                raise StackError(
                    "postgres",
                    f"running as root, PostgreSQL runs as {pg_user!r}, which cannot reach "
                    f"{self.dir} through {blocked[0]}; pick a state directory under a "
                    "world-traversable path (CDC_STACK_DIR)",
                )

    def _ensure_secrets(self) -> None:
        for key in ("postgres", "app", "debezium", "kafka_scram"):
            self.state.secrets.setdefault(key, secrets.token_urlsafe(18))
        self.procs.save()

    def _write_env(self, endpoints: StackEndpoints) -> None:
        # Single quotes: dotenv readers must not expand ${env:...} references.
        def lines(env: dict[str, str]) -> str:
            return "".join(f"{k}='{v}'\n" for k, v in env.items())

        write_private(self.dir / STACK_ENV_FILE, lines(endpoints.env()))
        # The same stack through the broker's TLS or SCRAM listener: CDC_ENV_FILE=<this file>.
        if endpoints.kafka_tls_bootstrap is not None:
            write_private(self.dir / "kafka-tls.env", lines(endpoints.env("SSL")))
            write_private(self.dir / "kafka-sasl.env", lines(endpoints.env("SASL_SSL")))

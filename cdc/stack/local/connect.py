"""A Kafka Connect distributed worker with Debezium as a local JVM."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from cdc.stack import config, probes
from cdc.stack.local.processes import HOST, Processes


class ConnectWorker:
    """One worker of the group: every worker of the stack shares its group and topics.
    ``replication_factor`` of its internal topics: -1 for the cluster's default."""

    stop_signal = signal.SIGTERM

    def __init__(
        self,
        procs: Processes,
        name: str,
        bootstrap: Callable[[], str],
        *,
        replication_factor: int = 1,
        rebalance_delay_ms: int | None = None,
        exactly_once: bool = False,
        heap: str = "1g",
    ) -> None:
        self.procs = procs
        self.name = name
        self.bootstrap = bootstrap  # the brokers' addresses, once their ports are known
        self.replication_factor = replication_factor
        self.rebalance_delay_ms = rebalance_delay_ms
        self.exactly_once = exactly_once
        self.heap = heap

    def properties(self, home: Path | None = None) -> dict[str, str]:
        """The worker's configuration (``home``: where the JVM artifacts are)."""
        return config.connect_worker_properties(
            bootstrap=self.bootstrap(),
            rest_host=HOST,
            rest_port=self.procs.port(self.name),
            plugin_path=str(home / "plugins") if home else None,
            replication_factor=self.replication_factor,
            rebalance_delay_ms=self.rebalance_delay_ms,
            exactly_once=self.exactly_once,
        )

    def start(self, home: Path) -> None:
        procs = self.procs
        props = self.properties(home)
        path = procs.dir / f"{self.name}.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        main = [
            "-cp",
            f"{home / 'lib'}/*",
            "org.apache.kafka.connect.cli.ConnectDistributed",
            str(path),
        ]
        procs.spawn(
            self.name,
            procs.java(self.heap, main, self.name),
            env={"CDC_DEBEZIUM_PASSWORD": procs.state.secrets["debezium"]},
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.procs.state.ports[self.name]}"

    def ready(self) -> bool:
        return probes.connect_ready(self.url)

"""Apicurio Registry as a local JVM."""

from __future__ import annotations

import signal
from pathlib import Path

from cdc.errors import StackError
from cdc.stack import config, probes
from cdc.stack.local.processes import HOST, Processes


class Registry:
    name = "registry"
    stop_signal = signal.SIGTERM

    def __init__(self, procs: Processes) -> None:
        self.procs = procs

    def start(self, home: Path) -> None:
        port = self.procs.port(self.name)
        props = config.registry_properties(host=HOST, port=port)
        sysprops = [f"-D{k}={v}" for k, v in props.items()]
        main = [*sysprops, "-jar", str(_registry_jar(home / "apicurio-registry"))]
        self.procs.spawn(self.name, self.procs.java("512m", main, self.name))

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.procs.state.ports[self.name]}"

    def ready(self) -> bool:
        return probes.registry_ready(self.url)


def _registry_jar(folder: Path) -> Path:
    # Quarkus fast-jar (quarkus-run.jar) or legacy runner jar, depending on the release.
    for jar in (folder / "quarkus-run.jar", *sorted(folder.glob("*-runner.jar"))):
        if jar.exists():
            return jar
    raise StackError("registry", f"no runnable jar in {folder}")

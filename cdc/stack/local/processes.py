"""The local stack's processes: each started under its name with its own log file, its pid
and ports kept in the state file, waited for and stopped. What the components share."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from cdc.errors import StackError

log = structlog.get_logger("cdc.stack")

HOST = "127.0.0.1"
LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = %d{ISO8601} %-5p [%t] %c{1}: %m%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.kafka.name = org.apache.kafka
logger.kafka.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
logger.debezium.name = io.debezium
logger.debezium.level = info
logger.worker.name = org.apache.kafka.connect.runtime
logger.worker.level = info
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def pid_alive(pid: int | None, marker: str) -> bool:
    """Alive and ours: the command line must mention our state directory (pids get reused)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    return stat[0] != "Z" and marker in cmdline


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def write_private(path: Path, text: str) -> None:
    """Write a file holding secrets: created 0600, replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that drop to ``user`` with its own group and no inherited groups."""
    if not user:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass
class StackState:
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    cluster_id: str = ""
    # The topology it was made with; Kafka's nodes are formatted for it, once.
    brokers: int = 1
    connect_workers: int = 1
    exactly_once: bool = False  # the workers' exactly-once source support
    # Each KRaft controller's metadata directory id, part of the initial quorum.
    directory_ids: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> StackState:
        if not path.exists():
            return cls()
        data: dict[str, Any] = json.loads(path.read_text())
        return cls(**data)

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(self.__dict__, indent=2))


class Processes:
    """The processes under one state directory, by component name."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.logs = self.dir / "logs"
        self._state_file = self.dir / "state.json"
        self.state = StackState.load(self._state_file)
        # PostgreSQL refuses to run as root; run it as the distribution's postgres user.
        self.pg_user = "postgres" if os.geteuid() == 0 else None

    def save(self) -> None:
        self.state.save(self._state_file)

    def alive(self, name: str) -> bool:
        return pid_alive(self.state.pids.get(name), str(self.dir))

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def port(self, name: str) -> int:
        """The port kept for ``name``, or a free one where it has none or another process
        took it."""
        port = self.state.ports.get(name)
        if port is None or port_open(port):
            taken = {p for n, p in self.state.ports.items() if n != name}
            port = free_port()
            while port in taken:
                port = free_port()
            self.state.ports[name] = port
        return port

    def reserve(self, name: str) -> int:
        """The port kept for ``name`` even while it is in use (another node's), or a free
        one: for addresses other processes are configured with."""
        if name not in self.state.ports:
            taken = set(self.state.ports.values())
            port = free_port()
            while port in taken:
                port = free_port()
            self.state.ports[name] = port
        return self.state.ports[name]

    def ports_of(self, name: str) -> list[int]:
        """The ports of component ``name``: its own and its listeners' (``kafka-ssl``...)."""
        return [p for n, p in self.state.ports.items() if n == name or n.startswith(f"{name}-")]

    def ensure(self, name: str, start: Callable[[], None]) -> None:
        if self.alive(name):
            return
        start()
        self.save()

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        logfile = self.log_file(name)
        with logfile.open("ab") as out:
            out.write(f"\n=== {time.strftime('%F %T')} starting {name}\n".encode())
            out.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={**os.environ, **(env or {})},
                    cwd=cwd or self.dir,
                    **as_user(user),
                )
            except OSError as exc:
                raise StackError(name, f"cannot run {argv[0]}: {exc.strerror}") from exc
        if user:
            with contextlib.suppress(OSError):
                os.chown(logfile, pwd.getpwnam(user).pw_uid, -1)
        # The java launcher re-executes itself: for a moment its command line is empty, so it
        # would not look like ours and `wait` would take it for a process that died at once.
        settled = time.monotonic() + 5
        while (
            proc.poll() is None
            and not pid_alive(proc.pid, str(self.dir))
            and time.monotonic() < settled
        ):
            time.sleep(0.01)
        self.state.pids[name] = proc.pid
        log.info("stack.start", component=name, pid=proc.pid, log=str(logfile))

    def run(
        self, argv: list[str], name: str, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A short preparation step (initdb, storage format)."""
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, check=False, cwd=self.dir, **as_user(user)
            )
        except OSError as exc:
            raise StackError(name, f"cannot run {argv[0]}: {exc.strerror}") from exc

    def wait(self, name: str, ready: Callable[[], bool], deadline: float) -> None:
        while True:
            if not self.alive(name):
                raise StackError(name, "process exited during start-up", tail(self.log_file(name)))
            if safe(ready):
                log.info("stack.ready", component=name, port=self.state.ports.get(name))
                return
            if time.monotonic() > deadline:
                raise StackError(name, "not ready before the deadline", tail(self.log_file(name)))
            time.sleep(0.5)

    def stop(self, name: str, timeout: float, sig: signal.Signals = signal.SIGTERM) -> None:
        """``sig`` to the process group, SIGKILL after ``timeout`` (at once with 0)."""
        self.stop_together({name: sig}, timeout)

    def stop_together(self, signals: dict[str, signal.Signals], timeout: float) -> None:
        """Stop several at once, each with its signal, SIGKILL after ``timeout``. A cluster's
        nodes go together: the last one stopped alone would wait for a controller quorum
        that is already gone."""
        pids = {
            n: pid
            for n in signals
            if (pid := self.state.pids.get(n)) and pid_alive(pid, str(self.dir))
        }
        if timeout > 0:
            for name, pid in pids.items():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signals[name])
        end = time.monotonic() + timeout
        while time.monotonic() < end and any(self.alive(n) for n in pids):
            time.sleep(0.2)
        for name, pid in pids.items():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            # Not our child when another process started it: wait until it is gone, or a
            # restart would find it still alive and not start it again.
            gone = time.monotonic() + 10
            while time.monotonic() < gone and pid_alive(pid, str(self.dir)):
                time.sleep(0.05)
            log.info("stack.stop", component=name, pid=pid)

    def java(self, heap: str, main: list[str], name: str) -> list[str]:
        """The command line of a JVM of the stack, marked with the state directory."""
        log4j = self.dir / "log4j2.properties"
        log4j.write_text(LOG4J2)
        return [
            "java",
            f"-Xmx{heap}",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dcdc.stack={self.dir}",
            f"-Dcdc.component={name}",
            *main,
        ]


def safe(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:
        return False


class Component(Protocol):
    """One process of the stack: how it starts (``home``: the JVM parts) and when it is
    ready."""

    name: str
    # postgres: SIGINT is its fast shutdown; the JVMs shut down cleanly on SIGTERM.
    stop_signal: signal.Signals

    def start(self, home: Path) -> None: ...

    def ready(self) -> bool: ...

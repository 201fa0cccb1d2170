"""The stack as local processes on loopback: free ports, one state directory, one log file
per component. ``up`` is idempotent and waits for readiness; ``down`` leaves nothing behind."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import structlog

from cdc.errors import StackError
from cdc.settings import STACK_ENV_FILE
from cdc.stack import config, probes, tls
from cdc.stack.endpoints import StackEndpoints
from cdc.stack.jvm import jvm_home

log = structlog.get_logger("cdc.stack")

PG_BIN = Path(os.environ.get("CDC_PG_BIN", "/usr/lib/postgresql/15/bin"))
COMPONENTS = ("postgres", "kafka", "connect", "registry")
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


def _pid_alive(pid: int | None, marker: str) -> bool:
    """Alive and ours: the command line must mention our state directory (pids get reused)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    return stat[0] != "Z" and marker in cmdline


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class StackState:
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    cluster_id: str = ""

    @classmethod
    def load(cls, path: Path) -> StackState:
        if not path.exists():
            return cls()
        data: dict[str, Any] = json.loads(path.read_text())
        return cls(**data)

    def save(self, path: Path) -> None:
        _write_private(path, json.dumps(self.__dict__, indent=2))


class LocalStack:
    """The four components under one state directory."""

    def __init__(self, state_dir: Path) -> None:
        # absolute(), not resolve(): a symlinked state directory is refused, not followed.
        self.dir = state_dir.absolute()
        self.logs = self.dir / "logs"
        self._state_file = self.dir / "state.json"
        self.state = StackState.load(self._state_file)
        # PostgreSQL refuses to run as root; run it as the distribution's postgres user.
        self._pg_user = "postgres" if os.geteuid() == 0 else None

    # -- public API -------------------------------------------------------------------
    def up(self, timeout: float = 240.0) -> StackEndpoints:
        self._prepare_dirs()
        home = jvm_home()  # a first fetch does not count against the start-up deadline
        started = time.monotonic()
        self._ensure_secrets()
        if self._ensure_tls() and _pid_alive(self.state.pids.get("kafka"), str(self.dir)):
            self._stop("kafka", 30)  # it still presents the certificate it started with
        deadline = started + timeout
        # The JVMs start slowly; start the independent ones together.
        for name, start in (
            ("postgres", self._start_postgres),
            ("kafka", lambda: self._start_kafka(home)),
            ("registry", lambda: self._start_registry(home)),
        ):
            self._ensure(name, start)
        self._wait("kafka", self._kafka_ready, deadline)
        self._ensure_scram_user()
        if self._has_secure_listeners():
            self._wait("kafka", self._kafka_secure_ready, deadline)
        else:
            log.warning(
                "stack.kafka.no_tls",
                hint="this broker started before it had TLS and SCRAM listeners; "
                "`cdc stack down` then `cdc stack up` adds them",
            )
        self._ensure("connect", lambda: self._start_connect(home))
        self._wait("postgres", self._postgres_ready, deadline)
        self._bootstrap_postgres()
        self._wait("registry", self._registry_ready, deadline)
        self._wait("connect", self._connect_ready, deadline)
        endpoints = self.endpoints()
        self._write_env(endpoints)
        log.info("stack.up", dir=str(self.dir), seconds=round(time.monotonic() - started, 1))
        return endpoints

    def down(self, timeout: float = 30.0) -> None:
        for name in reversed(COMPONENTS):
            self._stop(name, timeout)
        self.state.pids.clear()
        self.state.save(self._state_file) if self.dir.exists() else None

    def restart(
        self, name: str, *, crash: bool = False, down_s: float = 0.0, timeout: float = 180.0
    ) -> None:
        """Stop one component (``crash``: SIGKILL, no clean shutdown), leave it down for
        ``down_s`` and start it again on the same port and data; return once it is ready.
        For fault drills."""
        if name not in COMPONENTS:
            raise StackError(name, f"not a component: one of {', '.join(COMPONENTS)}")
        home = jvm_home()
        starts: dict[str, Callable[[], None]] = {
            "postgres": self._start_postgres,
            "kafka": lambda: self._start_kafka(home),
            "connect": lambda: self._start_connect(home),
            "registry": lambda: self._start_registry(home),
        }
        self._stop(name, 0 if crash else 30)
        # A killed JVM's threads outlive its main one for a moment, and its ports with them:
        # starting again before they are free would move the component to new ports.
        ports = [p for n, p in self.state.ports.items() if n.split("-")[0] == name]
        deadline = time.monotonic() + 30
        while any(port_open(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(down_s)
        self._ensure(name, starts[name])
        self._wait(name, self._checks()[name], time.monotonic() + timeout)

    def _checks(self) -> dict[str, Callable[[], bool]]:
        return {
            "postgres": self._postgres_ready,
            "kafka": self._kafka_ready,
            "connect": self._connect_ready,
            "registry": self._registry_ready,
        }

    def status(self) -> dict[str, dict[str, object]]:
        checks = self._checks()
        out: dict[str, dict[str, object]] = {}
        for name in COMPONENTS:
            pid = self.state.pids.get(name)
            alive = _pid_alive(pid, str(self.dir))
            out[name] = {
                "pid": pid if alive else None,
                "port": self.state.ports.get(name),
                "running": alive,
                "ready": alive and self._safe(checks[name]),
                "log": str(self.logs / f"{name}.log"),
            }
        return out

    def endpoints(self) -> StackEndpoints:
        p, s = self.state.ports, self.state.secrets
        secure = self._has_secure_listeners()
        return StackEndpoints(
            kafka_bootstrap=f"{HOST}:{p['kafka']}",
            connect_url=f"http://{HOST}:{p['connect']}",
            registry_url=f"http://{HOST}:{p['registry']}",
            pg_host=HOST,
            pg_port=p["postgres"],
            pg_superuser_password=s["postgres"],
            app_database=config.APP_DATABASE,
            app_user=config.APP_USER,
            app_password=s["app"],
            debezium_user=config.DEBEZIUM_USER,
            debezium_password=s["debezium"],
            kafka_tls_bootstrap=f"{HOST}:{p['kafka-ssl']}" if secure else None,
            kafka_sasl_bootstrap=f"{HOST}:{p['kafka-sasl']}" if secure else None,
            kafka_ca_location=str(self._tls_dir / "ca.pem") if secure else None,
            kafka_sasl_mechanism=config.SCRAM_MECHANISM if secure else None,
            kafka_sasl_username=config.SCRAM_USER if secure else None,
            kafka_sasl_password=s["kafka_scram"] if secure else None,
            log_dir=str(self.logs),
        )

    def destroy(self) -> None:
        """Stop everything and delete the state directory."""
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- process handling ---------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        if self.dir.is_symlink():
            raise StackError("stack", f"{self.dir} is a symbolic link; refusing to use it")
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.dir.lstat().st_uid != os.geteuid():
            raise StackError("stack", f"{self.dir} belongs to another user; refusing to use it")
        self.logs.mkdir(exist_ok=True)
        self.dir.chmod(0o711 if self._pg_user else 0o700)
        if self._pg_user:
            blocked = [p for p in self.dir.parents if not os.stat(p).st_mode & 0o001]
            if blocked:
                raise StackError(
                    "postgres",
                    f"running as root, PostgreSQL runs as {self._pg_user!r}, which cannot reach "
                    f"{self.dir} through {blocked[0]}; pick a state directory under a "
                    "world-traversable path (CDC_STACK_DIR)",
                )

    def _ensure_secrets(self) -> None:
        for key in ("postgres", "app", "debezium", "kafka_scram"):
            self.state.secrets.setdefault(key, secrets.token_urlsafe(18))
        self.state.save(self._state_file)

    @property
    def _tls_dir(self) -> Path:
        return self.dir / "tls"

    def _tls_files(self) -> tuple[Path, Path, Path]:
        """The broker's key, its certificate chain, the CA certificate."""
        d = self._tls_dir
        return d / "server-key.pem", d / "server-chain.pem", d / "ca.pem"

    def _ensure_tls(self) -> bool:
        """The CA certificate and the broker's key store, made once and again only near
        their end; return whether they were (re)made. The CA's key is never written down:
        it signs the one broker certificate and is gone."""
        key, chain, ca_file = self._tls_files()
        if not tls.needs_renewal(key, chain, ca_file):
            return False
        self._tls_dir.mkdir(mode=0o700, exist_ok=True)
        ca = tls.make_authority()
        key_pem, chain_pem = tls.server_keystore(ca)
        _write_private(key, key_pem.decode())
        _write_private(chain, chain_pem.decode())
        _write_private(ca_file, ca.pem.decode())
        log.info("stack.tls", ca=str(ca_file))
        return True

    def _port(self, name: str) -> int:
        port = self.state.ports.get(name)
        if port is None or port_open(port):
            taken = {p for n, p in self.state.ports.items() if n != name}
            port = free_port()
            while port in taken:
                port = free_port()
            self.state.ports[name] = port
        return port

    def _ensure(self, name: str, start: Callable[[], None]) -> None:
        if _pid_alive(self.state.pids.get(name), str(self.dir)):
            return
        start()
        self.state.save(self._state_file)

    def _spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        logfile = self.logs / f"{name}.log"
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
                    **_as_user(user),
                )
            except OSError as exc:
                raise StackError(name, f"cannot run {argv[0]}: {exc.strerror}") from exc
        if user:
            with contextlib.suppress(OSError):
                os.chown(logfile, pwd.getpwnam(user).pw_uid, -1)
        self.state.pids[name] = proc.pid
        log.info("stack.start", component=name, pid=proc.pid, log=str(logfile))

    def _run(
        self, argv: list[str], name: str, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A short preparation step (initdb, storage format)."""
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, check=False, cwd=self.dir, **_as_user(user)
            )
        except OSError as exc:
            raise StackError(name, f"cannot run {argv[0]}: {exc.strerror}") from exc

    def _wait(self, name: str, ready: Callable[[], bool], deadline: float) -> None:
        while True:
            if not _pid_alive(self.state.pids.get(name), str(self.dir)):
                raise StackError(
                    name, "process exited during start-up", _tail(self.logs / f"{name}.log")
                )
            if self._safe(ready):
                log.info("stack.ready", component=name, port=self.state.ports.get(name))
                return
            if time.monotonic() > deadline:
                raise StackError(
                    name, "not ready before the deadline", _tail(self.logs / f"{name}.log")
                )
            time.sleep(0.5)

    @staticmethod
    def _safe(check: Callable[[], bool]) -> bool:
        try:
            return check()
        except Exception:
            return False

    def _stop(self, name: str, timeout: float) -> None:
        pid = self.state.pids.get(name)
        if not _pid_alive(pid, str(self.dir)):
            return
        assert pid is not None
        # postgres: SIGINT is its fast shutdown; the JVMs shut down cleanly on SIGTERM.
        sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
        if timeout > 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        end = time.monotonic() + timeout
        while time.monotonic() < end and _pid_alive(pid, str(self.dir)):
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        # Not our child when another process started it: wait until it is gone, or a restart
        # would find it still alive and not start it again.
        end = time.monotonic() + 10
        while time.monotonic() < end and _pid_alive(pid, str(self.dir)):
            time.sleep(0.05)
        log.info("stack.stop", component=name, pid=pid)

    # -- PostgreSQL -------------------------------------------------------------------
    def _start_postgres(self) -> None:
        data = self.dir / "postgres"
        port = self._port("postgres")
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir()
            pwfile = self.dir / "pg.pw"
            _write_private(pwfile, self.state.secrets["postgres"] + "\n")
            if self._pg_user:
                entry = pwd.getpwnam(self._pg_user)
                os.chown(data, entry.pw_uid, entry.pw_gid)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            try:
                proc = self._run(
                    [
                        str(PG_BIN / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        "postgres",
                        f"--pwfile={pwfile}",
                        "--auth-host=scram-sha-256",
                        "--auth-local=reject",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                    ],
                    "postgres",
                    user=self._pg_user,
                )
            finally:
                pwfile.unlink(missing_ok=True)
            if proc.returncode != 0:
                raise StackError("postgres", "initdb failed", proc.stdout + proc.stderr)
        lock = data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            # After a crash its pid may linger as a zombie nobody reaps, which PostgreSQL
            # takes for a running postmaster: the lock is stale once that process is dead.
            if not _pid_alive(int(lock.read_text().split()[0]), str(self.dir)):
                lock.unlink()
        settings = {
            **config.PG_SETTINGS,
            "listen_addresses": HOST,
            "port": str(port),
            "unix_socket_directories": "",
        }
        argv = [str(PG_BIN / "postgres"), "-D", str(data)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self._spawn("postgres", argv, user=self._pg_user)

    def _pg_connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return probes.connect_superuser(
            HOST, self.state.ports["postgres"], self.state.secrets["postgres"]
        )

    def _postgres_ready(self) -> bool:
        return probes.postgres_ready(
            HOST, self.state.ports["postgres"], self.state.secrets["postgres"]
        )

    def _bootstrap_postgres(self) -> None:
        s = self.state.secrets
        with self._pg_connect() as conn:
            config.bootstrap_postgres(conn, config.DatabaseRoles(s["app"], s["debezium"]))

    # -- Kafka ------------------------------------------------------------------------
    def _java(self, home: Path, heap: str, main: list[str], name: str) -> list[str]:
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

    def _start_kafka(self, home: Path) -> None:
        port, cport = self._port("kafka"), self._port("kafka-controller")
        key, chain, _ = self._tls_files()
        security = config.BrokerSecurity(
            ssl_port=self._port("kafka-ssl"),
            sasl_port=self._port("kafka-sasl"),
            key=key.read_text(),
            certificate_chain=chain.read_text(),
        )
        props = config.broker_properties(
            port=port,
            controller_port=cport,
            log_dir=str(self.dir / "kafka" / "data"),
            security=security,
        )
        path = self.dir / "kafka" / "server.properties"
        path.parent.mkdir(exist_ok=True)
        # It holds the broker's private key.
        _write_private(path, "".join(f"{k}={_properties_value(v)}\n" for k, v in props.items()))
        cp = ["-cp", f"{home / 'lib'}/*"]
        if not (self.dir / "kafka" / "data" / "meta.properties").exists():
            self.state.cluster_id = self.state.cluster_id or kafka_cluster_id()
            proc = self._run(
                self._java(
                    home,
                    "256m",
                    [
                        *cp,
                        "kafka.tools.StorageTool",
                        "format",
                        f"--cluster-id={self.state.cluster_id}",
                        "-c",
                        str(path),
                        "--standalone",
                    ],
                    "kafka-format",
                ),
                "kafka",
            )
            if proc.returncode != 0:
                raise StackError("kafka", "storage format failed", proc.stdout + proc.stderr)
        self._spawn("kafka", self._java(home, "768m", [*cp, "kafka.Kafka", str(path)], "kafka"))

    def _kafka_ready(self) -> bool:
        return probes.kafka_ready(f"{HOST}:{self.state.ports['kafka']}")

    def _has_secure_listeners(self) -> bool:
        """Whether the running broker was started with the TLS and SCRAM listeners (one
        started by an older ``up`` has the PLAINTEXT one only)."""
        props = self.dir / "kafka" / "server.properties"
        try:
            return "SASL_SSL://" in props.read_text()
        except OSError:
            return False

    def _ensure_scram_user(self) -> None:
        """The SCRAM user of the SASL_SSL listener, with the stack's password; an upsert, so
        every ``up`` leaves it as the state file says. Made over PLAINTEXT (loopback)."""
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        admin = AdminClient({"bootstrap.servers": f"{HOST}:{self.state.ports['kafka']}"})
        upsert = UserScramCredentialUpsertion(
            config.SCRAM_USER,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
            self.state.secrets["kafka_scram"].encode(),
        )
        for future in admin.alter_user_scram_credentials([upsert]).values():
            try:
                future.result()
            except Exception as exc:
                # The error names the user, never the password.
                raise StackError("kafka", f"cannot create the SCRAM user: {exc}") from exc

    def _kafka_secure_ready(self) -> bool:
        """Both secure listeners answer, with the CA verified and the SCRAM user known."""
        p, ca = self.state.ports, str(self._tls_dir / "ca.pem")
        tls_conf = {"security.protocol": "SSL", "ssl.ca.location": ca}
        sasl_conf = {
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": ca,
            "sasl.mechanism": config.SCRAM_MECHANISM,
            "sasl.username": config.SCRAM_USER,
            "sasl.password": self.state.secrets["kafka_scram"],
        }
        return probes.kafka_ready(f"{HOST}:{p['kafka-ssl']}", tls_conf) and probes.kafka_ready(
            f"{HOST}:{p['kafka-sasl']}", sasl_conf
        )

    # -- Kafka Connect ------------------------------------------------------------------
    def _start_connect(self, home: Path) -> None:
        port = self._port("connect")
        props = config.connect_worker_properties(
            bootstrap=f"{HOST}:{self.state.ports['kafka']}",
            rest_host=HOST,
            rest_port=port,
            plugin_path=str(home / "plugins"),
        )
        path = self.dir / "connect.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        main = [
            "-cp",
            f"{home / 'lib'}/*",
            "org.apache.kafka.connect.cli.ConnectDistributed",
            str(path),
        ]
        self._spawn(
            "connect",
            self._java(home, "1g", main, "connect"),
            env={"CDC_DEBEZIUM_PASSWORD": self.state.secrets["debezium"]},
        )

    def _connect_ready(self) -> bool:
        return probes.connect_ready(f"http://{HOST}:{self.state.ports['connect']}")

    # -- Apicurio Registry ----------------------------------------------------------------
    def _start_registry(self, home: Path) -> None:
        port = self._port("registry")
        props = config.registry_properties(host=HOST, port=port)
        sysprops = [f"-D{k}={v}" for k, v in props.items()]
        main = [*sysprops, "-jar", str(_registry_jar(home / "apicurio-registry"))]
        self._spawn("registry", self._java(home, "512m", main, "registry"), cwd=self.dir)

    def _registry_ready(self) -> bool:
        return probes.registry_ready(f"http://{HOST}:{self.state.ports['registry']}")

    def _write_env(self, endpoints: StackEndpoints) -> None:
        # Single quotes: dotenv readers must not expand ${env:...} references.
        def lines(env: dict[str, str]) -> str:
            return "".join(f"{k}='{v}'\n" for k, v in env.items())

        _write_private(self.dir / STACK_ENV_FILE, lines(endpoints.env()))
        # The same stack through the broker's TLS or SCRAM listener: CDC_ENV_FILE=<this file>.
        if endpoints.kafka_tls_bootstrap is not None:
            _write_private(self.dir / "kafka-tls.env", lines(endpoints.env("SSL")))
            _write_private(self.dir / "kafka-sasl.env", lines(endpoints.env("SASL_SSL")))


def _properties_value(value: str) -> str:
    """A value as java.util.Properties reads it back: backslashes and line breaks escaped
    (the PEM texts span lines)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that drop to ``user`` with its own group and no inherited groups."""
    if not user:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _write_private(path: Path, text: str) -> None:
    """Write a file holding secrets: created 0600, replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def _registry_jar(folder: Path) -> Path:
    # Quarkus fast-jar (quarkus-run.jar) or legacy runner jar, depending on the release.
    for jar in (folder / "quarkus-run.jar", *sorted(folder.glob("*-runner.jar"))):
        if jar.exists():
            return jar
    raise StackError("registry", f"no runnable jar in {folder}")


def kafka_cluster_id() -> str:
    """16 random bytes, base64url, as ``kafka-storage random-uuid`` makes them: never with a
    leading '-', which the storage tool would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id

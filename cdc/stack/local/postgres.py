"""PostgreSQL as a local process: initdb once, then the server on loopback only."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
from pathlib import Path
from typing import Any

import psycopg

from cdc.errors import StackError
from cdc.stack import config, probes
from cdc.stack.local.processes import HOST, Processes, pid_alive, write_private

PG_BIN = Path(os.environ.get("CDC_PG_BIN", "/usr/lib/postgresql/15/bin"))


class Postgres:
    name = "postgres"
    stop_signal = signal.SIGINT

    def __init__(self, procs: Processes) -> None:
        self.procs = procs

    def start(self, home: Path) -> None:
        procs = self.procs
        data = procs.dir / "postgres"
        port = procs.port("postgres")
        if not (data / "PG_VERSION").exists():
            self._initdb(data)
        lock = data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            # After a crash its pid may linger as a zombie nobody reaps, which PostgreSQL
            # takes for a running postmaster: the lock is stale once that process is dead.
            if not pid_alive(int(lock.read_text().split()[0]), str(procs.dir)):
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
        procs.spawn("postgres", argv, user=procs.pg_user)

    def _initdb(self, data: Path) -> None:
        procs = self.procs
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        pwfile = procs.dir / "pg.pw"
        write_private(pwfile, procs.state.secrets["postgres"] + "\n")
        if procs.pg_user:
            entry = pwd.getpwnam(procs.pg_user)
            os.chown(data, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        try:
            proc = procs.run(
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
                user=procs.pg_user,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise StackError("postgres", "initdb failed", proc.stdout + proc.stderr)

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        s = self.procs.state
        return probes.connect_superuser(HOST, s.ports["postgres"], s.secrets["postgres"])

    def ready(self) -> bool:
        s = self.procs.state
        return probes.postgres_ready(HOST, s.ports["postgres"], s.secrets["postgres"])

    def bootstrap(self) -> None:
        s = self.procs.state.secrets
        with self.connect() as conn:
            config.bootstrap_postgres(conn, config.DatabaseRoles(s["app"], s["debezium"]))

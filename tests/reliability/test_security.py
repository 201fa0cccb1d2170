"""Security on the real stack: the consumer through the broker's TLS and SASL/SCRAM listeners
(dead-letter topic and ``ctx.publish`` included), bad credentials failing clearly, no secret
in any ``cdc`` output or component log, the Debezium role's least privilege, and hostile
table and column names in the watched-tables file refused or quoted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import psycopg
import pytest
import yaml
from confluent_kafka import Consumer, KafkaError, Message
from psycopg import errors, sql

from cdc import Change, Context, DeadLetter, on_change
from cdc.connect import prepare_database
from cdc.errors import ConfigError
from cdc.routing import Router, handlers_of
from cdc.settings import Settings
from cdc.stack import tls
from cdc.stack.config import DatabaseRoles, bootstrap_postgres
from cdc.stack.endpoints import StackEndpoints
from cdc.stack.probes import connect_superuser
from cdc.tables.config import parse_watched_tables
from cdc.tables.connector import heartbeat_action_query
from cdc.testing import RunningConsumer
from tests.integration.conftest import Pipeline
from tests.reliability.report import record

pytestmark = [pytest.mark.stack, pytest.mark.reliability]

Protocol = Literal["SSL", "SASL_SSL"]
# This run's figures so far: each test adds its own and rewrites the report's section.
FIGURES: dict[str, Any] = {}


def report(**figures: Any) -> None:
    FIGURES.update(figures)
    record("security", **FIGURES)


def read_topic(settings: Settings, topic: str, count: int, timeout: float = 60.0) -> list[Message]:
    """The first ``count`` records of ``topic``, read with ``settings``' Kafka security."""
    consumer = Consumer(
        settings.kafka_config(
            **{
                "group.id": f"sec-read-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(out)} of {count} record(s) on {topic} in {timeout}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue
                raise RuntimeError(f"reading {topic}: {err}")
            out.append(msg)
    finally:
        consumer.close()
    return out


# -- the consumer through TLS and SASL/SCRAM ---------------------------------------------------


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_consumer_through_a_secure_listener(pipeline: Pipeline, protocol: Protocol) -> None:
    stack = pipeline.stack
    table = pipeline.table("items")
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY, v text NOT NULL)")
    pipeline.write_file({table: {}})
    pipeline.apply()
    published = f"{pipeline.id}.published"
    dead_letters = f"{pipeline.id}.dlq"

    def handle(change: Change, ctx: Context) -> None:
        row = change.row
        assert isinstance(row, Mapping)
        if row["v"] == "fail":
            raise DeadLetter("refused on purpose")
        ctx.publish(published, {"id": row["id"]}, key=str(row["id"]))

    (handler,) = handlers_of(on_change(table, ops="c")(handle))
    watched = pipeline.watched()
    security = stack.kafka_security(protocol)
    settings = stack.settings(
        watched_tables=pipeline.file,
        group_id=pipeline.id,
        dead_letter_topic=dead_letters,
        retry_backoff_s=0.05,
        **security,
    )
    config = settings.kafka_config()
    assert config["security.protocol"] == protocol
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    assert config["ssl.ca.location"] == stack.kafka_ca_location
    assert config["bootstrap.servers"] != stack.kafka_bootstrap  # not the PLAINTEXT listener
    with RunningConsumer(settings, watched, Router([handler], watched.tables)) as consumer:
        pipeline.sql(f"INSERT INTO {table} VALUES (1, 'ok'), (2, 'fail')")
        ok = consumer.wait_for(table, "c", lambda c: c.after is not None and c.after["id"] == 1)
        failed = consumer.wait_for(table, "c", lambda c: c.after is not None and c.after["id"] == 2)
    assert not ok.parked
    assert failed.parked
    assert "refused on purpose" in failed.parked[0]
    # Both follow-ups went out through the same secure connection: read them back through it.
    (follow_up,) = read_topic(settings, published, 1)
    assert follow_up.key() == b"1"
    (parked,) = read_topic(settings, dead_letters, 1)
    headers = dict(parked.headers() or [])
    assert headers["cdc.dlq.reason"] == b"refused on purpose"
    report(**{"tls" if protocol == "SSL" else "sasl_scram": "change, publish, dead letter: ok"})


def cdc_command(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 90.0
) -> subprocess.CompletedProcess[str]:
    """``python -m cdc ARGS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def base_env(stack: StackEndpoints, tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment pointing at the stack only: no shared stack's endpoint file, no
    .env in the working directory."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    return (
        keep
        | stack.env()
        | {
            "CDC_STACK_DIR": str(tmp / "no-stack"),
            "CDC_ENV_FILE": str(tmp / "no.env"),
            "CDC_HTTP_PORT": "0",
            "CDC_CHECK_AT_START": "true",
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        | extra
    )


@pytest.mark.parametrize("fault", ["wrong SCRAM password", "untrusted CA"])
def test_bad_kafka_credentials_fail_clearly(pipeline: Pipeline, tmp_path: Path, fault: str) -> None:
    stack = pipeline.stack
    table = pipeline.table("items")
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    pipeline.write_file({table: {}})
    wrong = f"wrong-{uuid.uuid4().hex}"
    if fault == "untrusted CA":
        other = tmp_path / "other-ca.pem"
        other.write_bytes(tls.make_authority("someone else's CA").pem)
        env = base_env(stack, tmp_path, **stack.env("SSL"))
        env["CDC_KAFKA_SSL_CA_LOCATION"] = str(other)
        expected = "certificate verify failed"
    else:
        env = base_env(stack, tmp_path, **stack.env("SASL_SSL"))
        env["CDC_KAFKA_SASL_PASSWORD"] = wrong
        expected = "Authentication failed"
    env["CDC_WATCHED_TABLES"] = str(pipeline.file)
    # A one-shot command that needs the broker fails within its timeout and says why.
    started = time.monotonic()
    result = cdc_command(["lag"], env, tmp_path)
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "error: Kafka" in result.stderr
    assert took < 60
    assert wrong not in output
    # `cdc run` logs the reason (never the secret) and, refused for longer than
    # CDC_KAFKA_REFUSED_TIMEOUT_S, stops with exit 2 rather than run on doing nothing.
    (tmp_path / "sec_noop.py").write_text(
        textwrap.dedent(f"""
        from cdc import on_change

        @on_change("public.{table}")
        def noop(change, ctx):
            return None
        """)
    )
    env |= {
        "CDC_HANDLERS": "sec_noop",
        "CDC_GROUP_ID": pipeline.id,
        "CDC_KAFKA_REFUSED_TIMEOUT_S": "5",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc", "run", "--no-check"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 2, out[-3000:]
    assert expected in out, out[-3000:]
    assert "error: Kafka refused the connection" in out, out[-3000:]
    assert wrong not in out
    bad = dict(FIGURES.get("bad_credentials", {}))
    bad[fault] = {
        "cdc lag": f"exit {result.returncode} in {took:.1f}s: {result.stderr.strip()[:160]}",
        "cdc run": f"exit {proc.returncode} after CDC_KAFKA_REFUSED_TIMEOUT_S, logs {expected!r}",
    }
    report(bad_credentials=bad)


# -- secrets never printed ---------------------------------------------------------------------


def test_no_secret_in_output_or_logs(pipeline: Pipeline, tmp_path: Path) -> None:
    stack = pipeline.stack
    assert stack.kafka_sasl_password is not None
    secrets = {
        "pg superuser password": stack.pg_superuser_password,
        "pg app password": stack.app_password,
        "debezium password": stack.debezium_password,
        "kafka SCRAM password": stack.kafka_sasl_password,
    }
    assert all(len(s) >= 16 for s in secrets.values())
    table, effects = pipeline.table("items"), pipeline.table("effects")
    pipeline.sql(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    pipeline.sql(f"CREATE TABLE {effects} (id int PRIMARY KEY)")
    pipeline.write_file({table: {}})
    (tmp_path / "sec_handlers.py").write_text(
        textwrap.dedent(f"""
        from cdc import Change, Context, on_change

        @on_change("public.{table}", ops="c")
        def note(change: Change, ctx: Context) -> None:
            with ctx.connection() as conn:
                conn.execute(
                    "INSERT INTO {effects} (id) VALUES (%s) ON CONFLICT DO NOTHING",
                    (change.row["id"],),
                )
        """)
    )
    env = base_env(
        stack,
        tmp_path,
        **stack.env("SASL_SSL"),
        CDC_WATCHED_TABLES=str(pipeline.file),
        CDC_HANDLERS="sec_handlers",
        CDC_GROUP_ID=pipeline.id,
        CDC_PG_SUPERUSER_PASSWORD=stack.pg_superuser_password,
        CDC_LOG_LEVEL="DEBUG",
    )
    outputs: dict[str, str] = {}

    def run(name: str, args: list[str], ok: bool, **changes: str) -> None:
        result = cdc_command(args, env | changes, tmp_path)
        outputs[name] = result.stdout + result.stderr
        assert (result.returncode == 0) is ok, f"{name}: {outputs[name][-2000:]}"

    run("connector apply", ["connector", "apply"], ok=True)
    run("connector render", ["connector", "render"], ok=True)
    run("connector render strimzi", ["connector", "render", "--format", "strimzi"], ok=True)
    run("settings", ["settings"], ok=True)
    run("check", ["check"], ok=True)
    run("db init", ["db", "init"], ok=True)
    run("connector status", ["connector", "status"], ok=True)
    run("lag", ["lag"], ok=True)
    run("dlq list", ["dlq", "list"], ok=True)
    run("deploy kubernetes", ["deploy", "kubernetes"], ok=True)
    # Failing paths: the error names what failed, never the secret that was tried.
    run(
        "check, wrong pg password",
        ["check"],
        ok=False,
        CDC_PG_PASSWORD="x" + secrets["pg app password"],
    )
    run(
        "db init, wrong superuser password",
        ["db", "init"],
        ok=False,
        CDC_PG_SUPERUSER_PASSWORD="x" + secrets["pg superuser password"],
    )
    run(
        "lag, wrong SCRAM password",
        ["lag"],
        ok=False,
        CDC_KAFKA_SASL_PASSWORD="x" + secrets["kafka SCRAM password"],
    )
    run(
        "connector apply, Connect unreachable",
        ["connector", "apply"],
        ok=False,
        CDC_CONNECT_URL="http://127.0.0.1:9",
    )
    run(
        "connector apply, inline password, Connect unreachable",
        ["connector", "apply"],
        ok=False,
        CDC_CONNECT_URL="http://127.0.0.1:9",
        CDC_DEBEZIUM_PASSWORD_INLINE="true",
    )
    assert "kafka_sasl_password" in outputs["settings"]  # listed, masked
    # `cdc run` through SASL_SSL: handles a change, then stops on SIGTERM.
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc", "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        pipeline.sql(f"INSERT INTO {table} VALUES (7)")
        deadline = time.monotonic() + 90
        while not pipeline.sql(f"SELECT 1 FROM {effects} WHERE id = 7"):
            assert proc.poll() is None, "cdc run exited"
            assert time.monotonic() < deadline, "the change was not handled in 90s"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]
    outputs["run (SASL_SSL)"] = out

    leaks = [
        (command, secret)
        for command, text in outputs.items()
        for secret, value in secrets.items()
        if value in text
    ]
    assert not leaks, leaks
    # The components' own logs (the local stack's logs/; containers log elsewhere).
    log_lines = 0
    if stack.log_dir is not None:
        for path in sorted(Path(stack.log_dir).glob("*.log")):
            text = path.read_text(errors="replace")
            log_lines += text.count("\n")
            leaked = [name for name, value in secrets.items() if value in text]
            assert not leaked, f"{path.name} holds {leaked}"
        assert log_lines > 0
    report(
        secrets_checked=sorted(secrets),
        commands_scanned=len(outputs),
        log_lines_scanned=log_lines,
        leaks=len(leaks),
    )


# -- the Debezium role: least privilege --------------------------------------------------------


def as_role(stack: StackEndpoints, user: str, password: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=stack.pg_host,
        port=stack.pg_port,
        dbname=stack.app_database,
        user=user,
        password=password,
        autocommit=True,
    )


def denied(conn: psycopg.Connection[Any], statement: str) -> bool:
    try:
        conn.execute(statement)
    except errors.InsufficientPrivilege:
        return True
    return False


def test_debezium_role_has_only_what_it_needs(pipeline: Pipeline) -> None:
    stack = pipeline.stack
    watched_t, other = pipeline.table("watched"), pipeline.table("unwatched")
    for t in (watched_t, other):
        pipeline.sql(f"CREATE TABLE {t} (id int PRIMARY KEY)")
        pipeline.sql(f"INSERT INTO {t} VALUES (1)")
    pipeline.write_file({watched_t: {}})
    pipeline.apply()
    dbz = stack.debezium_user
    with connect_superuser(
        stack.pg_host, stack.pg_port, stack.pg_superuser_password, stack.app_database
    ) as su:
        # A role that had more than it needs is cut back by the bootstrap.
        su.execute(sql.SQL("ALTER ROLE {} CREATEDB CREATEROLE").format(sql.Identifier(dbz)))
        roles = DatabaseRoles(stack.app_password, stack.debezium_password)
        bootstrap_postgres(su, roles)
        role = su.execute(
            "SELECT rolcanlogin, rolreplication, rolsuper, rolcreatedb, rolcreaterole, "
            "rolbypassrls FROM pg_roles WHERE rolname = %s",
            (dbz,),
        ).fetchone()
        assert role == (True, True, False, False, False, False)
        owned = su.execute(
            "SELECT count(*) FROM pg_shdepend WHERE deptype = 'o' AND refobjid = "
            "(SELECT oid FROM pg_roles WHERE rolname = %s)",
            (dbz,),
        ).fetchone()
        assert owned == (0,)
        members = su.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
            "WHERE r.rolname = %s",
            (dbz,),
        ).fetchone()
        assert members == (0,)  # no role (pg_read_all_data, ...) lends it more
        # Anything beyond SELECT is on the connector's own heartbeat and signal tables.
        beyond_select = su.execute(
            "SELECT DISTINCT table_schema || '.' || table_name, privilege_type "
            "FROM information_schema.role_table_grants WHERE grantee = %s "
            "AND privilege_type <> 'SELECT'",
            (dbz,),
        ).fetchall()
    internal = {"cdc.heartbeat": {"INSERT", "UPDATE"}, "cdc.signal": {"INSERT", "DELETE"}}
    for name, privilege in beyond_select:
        assert privilege in internal.get(name, set()), (name, privilege)

    with as_role(stack, dbz, stack.debezium_password) as conn:
        assert conn.execute(f"SELECT id FROM {watched_t}").fetchall() == [(1,)]
        refused = {
            "select unwatched": denied(conn, f"SELECT * FROM {other}"),
            "insert": denied(conn, f"INSERT INTO {watched_t} VALUES (2)"),
            "update": denied(conn, f"UPDATE {watched_t} SET id = 3"),
            "delete": denied(conn, f"DELETE FROM {watched_t}"),
            "truncate": denied(conn, f"TRUNCATE {watched_t}"),
            "create in public": denied(conn, f"CREATE TABLE {pipeline.table('dbz')} (id int)"),
            "create schema": denied(conn, f"CREATE SCHEMA {pipeline.table('dbzs')}"),
            "alter publication": denied(
                conn, f'ALTER PUBLICATION "{pipeline.id}" ADD TABLE {other}'
            ),
        }
        # Its heartbeat query, exactly as the connector runs it, works.
        conn.execute(heartbeat_action_query(pipeline.watched().heartbeat_table))
    assert all(refused.values()), refused
    report(
        debezium_privileges={
            "role": "LOGIN REPLICATION only; owns nothing",
            "refused": sorted(refused),
            "beyond_select": sorted({f"{n}: {p}" for n, p in beyond_select}),
        }
    )


# -- hostile names in the watched-tables file --------------------------------------------------

HOSTILE = [
    'x"; DROP TABLE canary; --',
    "x'; DROP TABLE canary; --",
    "x; DROP TABLE canary",
    "x -- comment",
    "x/*c*/",
    "x\\y",
    'x\\"y',
    "Users",  # quoted in PostgreSQL it is another table than users
    "\uff55sers",  # fullwidth u
    "us\u0435rs",  # Cyrillic e
    "x\x00y",
    "a" * 64,  # PostgreSQL would truncate it to 63 bytes: another name
    "\u00e9" * 32,  # 32 characters, 64 bytes
    "a.b",
    ".x",
    "x.",
    " x",
    "x ",
    "x\ty",
    "users\n",
    "",
    "1abc",
    "x$y",
    "x-y",
    "%s",
    "{}",
]


def _file(position: str, name: str) -> dict[str, Any]:
    base: dict[str, Any] = {"tables": {"public.t": {}}}
    if position == "table":
        base["tables"] = {f"public.{name}": {}}
    elif position == "schema":
        base["tables"] = {f"{name}.t": {}}
    elif position == "exclude_columns":
        base["tables"] = {"public.t": {"exclude_columns": [name]}}
    elif position in ("publication", "slot", "internal_schema", "name", "topic_prefix"):
        base["connector"] = {position: name}
    elif position == "outbox table":
        base["outbox"] = {"table": f"public.{name}"}
    elif position == "outbox schema":
        base["outbox"] = {"table": f"{name}.outbox"}
    return base


POSITIONS = [
    "table",
    "schema",
    "exclude_columns",
    "publication",
    "slot",
    "internal_schema",
    "outbox table",
    "outbox schema",
]
# Where each position's problem is reported.
WHERE = {
    "table": "tables",
    "schema": "tables",
    "exclude_columns": "tables.public.t.exclude_columns",
    "publication": "connector.publication",
    "slot": "connector.slot",
    "internal_schema": "connector.internal_schema",
    "outbox table": "outbox.table",
    "outbox schema": "outbox.table",
}
REFUSED: set[tuple[str, str]] = set()


@pytest.mark.parametrize("name", HOSTILE, ids=repr)
def test_hostile_name_is_refused(name: str) -> None:
    for position in POSITIONS:
        # YAML, as the file is written: a NUL or a tab survives the round trip.
        text = yaml.safe_dump(_file(position, name), allow_unicode=True)
        assert yaml.safe_load(text) == _file(position, name)
        with pytest.raises(ConfigError) as caught:
            parse_watched_tables(text, "cdc.yaml")
        message = str(caught.value)
        assert message.startswith("cdc.yaml: 1 problem(s)"), message
        assert f"  - {WHERE[position]}" in message, (position, message)
        REFUSED.add((position, name))
    report(hostile_names=len(HOSTILE) * len(POSITIONS), refused=len(REFUSED))


@pytest.mark.parametrize("name", ["..", "."])
def test_connector_name_cannot_be_a_path_segment(name: str) -> None:
    with pytest.raises(ConfigError, match="path segment"):
        parse_watched_tables(yaml.safe_dump({"connector": {"name": name}, **_file("x", "")}))


def test_valid_names_are_quoted_in_every_statement(pipeline: Pipeline) -> None:
    """Valid unquoted identifiers that are reserved words, or exactly 63 bytes long: every
    statement we make quotes them, so they mean these tables and nothing else."""
    stack = pipeline.stack
    schema = f"sec_{uuid.uuid4().hex[:8]}"
    internal = "all"  # reserved: the heartbeat and signal tables' schema
    canary = pipeline.table("canary")
    pipeline.sql(f"CREATE TABLE {canary} (id int PRIMARY KEY)")
    pipeline.sql(f"INSERT INTO {canary} VALUES (1)")
    pipeline.sql(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)).as_string())
    names = ["select", "user", "order", "a" * 63]
    for t in names:
        pipeline.sql(
            sql.SQL('CREATE TABLE {} ("from" int PRIMARY KEY, "table" text, "user" text)')
            .format(sql.Identifier(schema, t))
            .as_string()
        )
    body = {
        "connector": {
            "name": pipeline.name,
            "topic_prefix": pipeline.id,
            "slot": pipeline.id,
            "publication": "grant",
            "internal_schema": internal,
        },
        "tables": {
            f"{schema}.{t}": {
                "replica_identity": "full" if t == "select" else "default",
                "exclude_columns": ["table", "user"],
            }
            for t in names
        },
    }
    watched = parse_watched_tables(yaml.safe_dump(body))
    try:
        prepare_database(watched, pipeline.settings)
        prepare_database(watched, pipeline.settings)  # idempotent
        with connect_superuser(
            stack.pg_host, stack.pg_port, stack.pg_superuser_password, stack.app_database
        ) as su:
            published = set(
                su.execute(
                    "SELECT schemaname, tablename FROM pg_publication_tables "
                    "WHERE pubname = 'grant'"
                ).fetchall()
            )
            identity = su.execute(
                "SELECT relreplident FROM pg_class WHERE oid = %s::regclass",
                (sql.Identifier(schema, "select").as_string(),),
            ).fetchone()
            grants = {
                t: su.execute(
                    "SELECT has_table_privilege(%s, %s, 'SELECT')",
                    (stack.debezium_user, sql.Identifier(schema, t).as_string()),
                ).fetchone()
                for t in names
            }
        assert published == {(schema, t) for t in names} | {
            (internal, "heartbeat"),
            (internal, "signal"),
        }
        assert identity == ("f",)
        assert all(g == (True,) for g in grants.values()), grants
        assert pipeline.sql(f"SELECT id FROM {canary}") == [(1,)]
        with as_role(stack, stack.debezium_user, stack.debezium_password) as conn:
            conn.execute(heartbeat_action_query(watched.heartbeat_table))
            beat = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(internal, "heartbeat"))
            ).fetchone()
        assert beat == (1,)
    finally:
        with connect_superuser(
            stack.pg_host, stack.pg_port, stack.pg_superuser_password, stack.app_database
        ) as su:
            su.execute('DROP PUBLICATION IF EXISTS "grant"')
            for s in (schema, internal):
                su.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(s)))
    # The tables, the schema of the heartbeat and signal tables, the publication.
    report(quoted=len(names) + 2)

"""Readiness checks, the same for local processes and containers."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import psycopg
from confluent_kafka.admin import AdminClient

# Also what the compose health checks ask.
CONNECT_READY_PATH = "/connector-plugins"
REGISTRY_READY_PATH = "/apis/ccompat/v7/subjects"

_quiet = logging.getLogger("cdc.stack.librdkafka")
_quiet.setLevel(logging.CRITICAL)


def connect_superuser(
    host: str, port: int, password: str, dbname: str = "postgres", user: str = "postgres"
) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection as a superuser (the stack's ``postgres`` by default)."""
    return psycopg.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=3,
        autocommit=True,
    )


def postgres_ready(host: str, port: int, password: str) -> bool:
    with connect_superuser(host, port, password) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def kafka_ready(
    bootstrap: str, security: dict[str, str] | None = None, node_id: int | None = None
) -> bool:
    """The broker answers metadata requests (through a TLS or SASL listener with
    ``security``: librdkafka's ``security.protocol``, ``ssl.*``, ``sasl.*``); with
    ``node_id``, the cluster counts that broker among its live ones."""
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": 2000,
        "logger": _quiet,
        **(security or {}),
    }
    admin = AdminClient(conf)  # type: ignore[arg-type]  # librdkafka takes a Logger here
    brokers = admin.list_topics(timeout=3).brokers
    return node_id in brokers if node_id is not None else len(brokers) >= 1


def connect_ready(url: str) -> bool:
    response = httpx.get(f"{url}{CONNECT_READY_PATH}", timeout=3)
    return response.status_code == 200 and any(
        p["class"].endswith("PostgresConnector") for p in response.json()
    )


def registry_ready(url: str) -> bool:
    return httpx.get(f"{url}{REGISTRY_READY_PATH}", timeout=3).status_code == 200

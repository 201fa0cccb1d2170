"""The pure parts of the operator commands: connector status rows and snapshot table names."""

from __future__ import annotations

import pytest

from cdc.connect import InstanceStatus, status_rows, watched_names
from cdc.errors import ConfigError
from cdc.tables.config import parse_watched_tables

WATCHED = parse_watched_tables("tables: {public.users: {}, shop.orders: {}}")


def test_status_rows_show_each_instance_and_a_failed_trace_first_line() -> None:
    status = {
        "name": "cdc",
        "connector": {"state": "RUNNING", "worker_id": "10.0.0.1:8083"},
        "tasks": [
            {"id": 0, "state": "RUNNING", "worker_id": "10.0.0.1:8083"},
            {
                "id": 1,
                "state": "FAILED",
                "worker_id": "10.0.0.2:8083",
                "trace": "org.apache.kafka.connect.errors.ConnectException: slot busy\n\tat x\n",
            },
        ],
    }
    assert status_rows(status) == [
        InstanceStatus("connector", "RUNNING", "10.0.0.1:8083", ""),
        InstanceStatus("task 0", "RUNNING", "10.0.0.1:8083", ""),
        InstanceStatus(
            "task 1",
            "FAILED",
            "10.0.0.2:8083",
            "org.apache.kafka.connect.errors.ConnectException: slot busy",
        ),
    ]


def test_status_rows_of_an_empty_restart_plan() -> None:
    # What a worker older than Kafka 3.0 gives back for a restart.
    assert status_rows({}) == []


def test_watched_names_qualify_bare_names_once() -> None:
    assert watched_names(WATCHED, ["users", "shop.orders", "public.users"], "cdc.yaml") == [
        "public.users",
        "shop.orders",
    ]


def test_watched_names_refuse_an_unwatched_table_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        watched_names(WATCHED, ["users", "orders", "shop.items"], "cdc.yaml")
    assert caught.value.source == "cdc.yaml"
    watching = "(watched: public.users, shop.orders)"
    assert caught.value.problems == [
        f"public.orders is not a watched table {watching}",
        f"shop.items is not a watched table {watching}",
    ]

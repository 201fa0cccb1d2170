"""`cdc check`'s comparison on hand-built live states: every finding and the clean case."""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import Field

from cdc import Change, Row
from cdc.check import (
    ConnectorState,
    Finding,
    LiveState,
    LiveTable,
    Report,
    Severity,
    compare,
)
from cdc.replication_check import ClusterTopics, TopicReplication
from cdc.routing import TableHandler, handlers_of, on_change
from cdc.settings import MASK
from cdc.tables.config import parse_watched_tables
from cdc.tables.connector import DatabaseEndpoint, connector_config
from cdc.tables.sql import publication_tables

WATCHED = parse_watched_tables(
    """
connector: {name: shop, publication: shop_pub}
tables:
  public.users: {replica_identity: full, exclude_columns: [password_hash]}
  public.posts: {}
"""
)
PASSWORD = "s3cret-pw"  # inline, as with `debezium_password_inline`
RENDERED = connector_config(
    WATCHED, DatabaseEndpoint(host="db", port=5432, database="app", user="dbz", password=PASSWORD)
)
USERS = LiveTable("f", frozenset({"id"}), frozenset({"id", "email", "handle", "password_hash"}))
POSTS = LiveTable("d", frozenset({"id"}), frozenset({"id", "author_id", "title", "body"}))


class User(Row):
    id: int
    email: str
    handle: str


class Post(Row):
    id: int
    title: str | None


def user_changed(change: Change[Any], ctx: object) -> None:
    print(change.before, change.after)


def post_written(change: Change[Any], ctx: object) -> None:
    print(change.after)


HANDLERS = [
    *handlers_of(on_change("public.users", model=User)(user_changed)),
    *handlers_of(on_change("posts", ops="cd", model=Post)(post_written)),
]


def live(**changes: Any) -> LiveState:
    """The state `cdc connector apply` leaves behind, with ``changes``."""
    clean = LiveState(
        connector=ConnectorState("http://connect:8083", RENDERED, dict(RENDERED)),
        publication=frozenset(str(t) for t in publication_tables(WATCHED)),
        tables={"public.users": USERS, "public.posts": POSTS},
    )
    return dataclasses.replace(clean, **changes)


def handler(table: str, **declared: Any) -> TableHandler:
    def react(change: Change[Any], ctx: object) -> None:
        pass

    (found,) = handlers_of(on_change(table, **declared)(react))
    return found


def check(handlers: list[TableHandler], state: LiveState | None = None) -> Report:
    return compare(handlers, WATCHED, state or live(), file="cdc.yaml")


def only(report: Report, severity: Severity = Severity.ERROR) -> Finding:
    assert len(report.findings) == 1, report.lines()
    (finding,) = report.findings
    assert finding.severity is severity
    return finding


def test_clean_setup_has_no_findings() -> None:
    report = check(HANDLERS)
    assert report.findings == []
    assert report.ok
    assert report.lines() == []


def test_reads_before_is_found_in_the_source() -> None:
    assert HANDLERS[0].reads_before
    assert not HANDLERS[1].reads_before


def test_handler_for_a_table_nobody_captures() -> None:
    finding = only(check([*HANDLERS, handler("public.orders")]))
    assert finding.subject == "public.orders"
    assert "not in cdc.yaml" in finding.problem
    assert "react" in finding.problem
    assert finding.fix == (
        "add `public.orders: {}` under `tables:` in cdc.yaml, then run `cdc connector apply`"
    )


def test_fixes_name_the_given_file() -> None:
    report = compare([*HANDLERS, handler("orders")], WATCHED, live(), file="conf/watched.yaml")
    assert only(report).fix == (
        "add `public.orders: {}` under `tables:` in conf/watched.yaml, "
        "then run `cdc connector apply --tables conf/watched.yaml`"
    )
    missing = ConnectorState("http://connect:8083", RENDERED, None)
    spaced = compare(HANDLERS, WATCHED, live(connector=missing), file="my tables.yaml")
    assert only(spaced).fix == "run `cdc connector apply --tables 'my tables.yaml'` to create it"


def test_reading_before_of_updates_needs_full_declared() -> None:
    finding = only(check([*HANDLERS, handler("posts", ops="u", reads_before=True)]))
    assert finding.subject.startswith("handler ")
    assert "replica identity default" in finding.problem
    assert "update carries no old row" in finding.problem
    assert finding.fix == (
        "set `replica_identity: full` under `tables.public.posts` in cdc.yaml, "
        "then run `cdc connector apply`"
    )


def test_a_columns_filter_reads_before() -> None:
    finding = only(check([*HANDLERS, handler("posts", columns=["title"])]))
    assert "reads `before`" in finding.problem


def test_reading_before_checks_the_live_identity_too() -> None:
    users = dataclasses.replace(USERS, replica_identity="d")
    report = check(HANDLERS, live(tables={"public.users": users, "public.posts": POSTS}))
    by_subject = {f.subject: f for f in report.errors}
    model = f"model {__name__}.User (public.users)"
    assert set(by_subject) == {"public.users", f"handler {HANDLERS[0].name}", model}
    assert "email, handle would be null" in by_subject[model].problem
    assert "DEFAULT in the database" in by_subject[f"handler {HANDLERS[0].name}"].problem
    assert by_subject["public.users"].fix == (
        "run `cdc connector apply` (it runs ALTER TABLE public.users REPLICA IDENTITY FULL)"
    )


def test_reading_before_of_deletes_only_is_a_warning() -> None:
    finding = only(
        check([*HANDLERS, handler("posts", ops="d", reads_before=True)]), Severity.WARNING
    )
    assert "old row has only the key" in finding.problem
    assert check([*HANDLERS, handler("posts", ops="ct", reads_before=True)]).findings == []


def test_model_that_rejects_null_columns_on_deletes() -> None:
    class StrictPost(Row):
        id: int
        title: str
        body: str | None = None

    finding = only(check([*HANDLERS, handler("posts", ops="d", model=StrictPost)]))
    assert finding.subject == f"model {__name__}.{StrictPost.__qualname__} (public.posts)"
    assert "has only the key (id)" in finding.problem
    assert "title would be null" in finding.problem
    assert "`replica_identity: full`" in finding.fix
    # No deletes, or a FULL table: the old row is whole or absent.
    assert check([*HANDLERS, handler("posts", ops="cu", model=StrictPost)]).findings == []
    assert check([*HANDLERS, handler("users", ops="d", model=User)]).findings == []


def test_captured_table_without_handler_is_a_warning() -> None:
    report = check(HANDLERS[:1])
    finding = only(report, Severity.WARNING)
    assert report.ok
    assert finding.subject == "public.posts"
    assert '`@on_change("public.posts")`' in finding.fix


def test_connector_missing() -> None:
    state = live(connector=ConnectorState("http://connect:8083", RENDERED, None))
    finding = only(check(HANDLERS, state))
    assert finding.subject == "connector shop"
    assert "does not exist in Kafka Connect at http://connect:8083" in finding.problem
    assert "`cdc connector apply`" in finding.fix


def test_connect_unreachable_is_a_finding() -> None:
    state = live(connector=ConnectorState("http://x:1", RENDERED, None, error="refused"))
    finding = only(check(HANDLERS, state))
    assert "Kafka Connect at http://x:1 cannot be asked: refused" in finding.problem
    assert "CDC_CONNECT_URL" in finding.fix


def test_connector_config_drift_lists_keys_and_masks_secrets() -> None:
    drifted = {**RENDERED, "snapshot.mode": "always", "database.password": "old-pw", "x.y": "1"}
    del drifted["tombstones.on.delete"]
    state = live(connector=ConnectorState("http://connect:8083", RENDERED, drifted))
    finding = only(check(HANDLERS, state))
    assert "in 4 key(s)" in finding.problem
    assert f"database.password is {MASK} (expected {MASK})" in finding.problem
    assert "snapshot.mode is 'always' (expected 'initial')" in finding.problem
    assert "tombstones.on.delete is missing (expected 'true')" in finding.problem
    assert "x.y is '1' but should not be set" in finding.problem
    text = "\n".join(check(HANDLERS, state).lines())
    assert PASSWORD not in text
    assert "old-pw" not in text
    assert PASSWORD not in repr(state)


def test_password_references_are_shown() -> None:
    ref = {**RENDERED, "database.password": "${env:CDC_DEBEZIUM_PASSWORD}"}
    state = live(connector=ConnectorState("http://connect:8083", RENDERED, ref))
    assert (
        f"'${{env:CDC_DEBEZIUM_PASSWORD}}' (expected {MASK})"
        in only(check(HANDLERS, state)).problem
    )


def test_publication_missing_or_different() -> None:
    finding = only(check(HANDLERS, live(publication=None)))
    assert (finding.subject, finding.problem) == ("publication shop_pub", "does not exist")
    assert "`cdc connector apply`" in finding.fix
    published = frozenset({"public.users", "public.other", "cdc.heartbeat", "cdc.signal"})
    finding = only(check(HANDLERS, live(publication=published)))
    assert finding.problem == "lacks public.posts; also publishes public.other"


def test_watched_table_missing_or_with_another_identity() -> None:
    report = check(HANDLERS, live(tables={"public.users": USERS}))
    finding = only(report)  # the posts handler is not reported on top
    assert (finding.subject, finding.problem) == ("public.posts", "no such table in the database")
    nothing = dataclasses.replace(POSTS, replica_identity="n")
    finding = only(check(HANDLERS, live(tables={"public.users": USERS, "public.posts": nothing})))
    assert (
        finding.problem
        == "replica identity is NOTHING in the database, but cdc.yaml declares default"
    )
    assert finding.fix == (
        "run `cdc connector apply` (it runs ALTER TABLE public.posts REPLICA IDENTITY DEFAULT)"
    )


def test_model_fields_must_be_sent_columns() -> None:
    class Account(Row):
        id: int
        mail: str = Field(alias="email")  # by alias: a column
        password_hash: str | None = None  # excluded in the file
        nickname: str | None = None  # no such column

    report = check([*HANDLERS, handler("users", ops="c", model=Account)])
    problems = sorted(f.problem for f in report.errors)
    assert len(report.findings) == 2, report.lines()
    assert (
        "field 'nickname' reads column 'nickname', which public.users does not have" in problems[0]
    )
    assert "'password_hash', which cdc.yaml excludes" in problems[1]


def test_database_unreachable_reports_what_the_file_alone_shows() -> None:
    state = live(publication=None, tables={}, database_error="connection refused")
    report = check([*HANDLERS, handler("orders"), handler("posts", reads_before=True)], state)
    assert sorted(f.subject for f in report.errors) == [
        "database",
        f"handler {handler('posts').name}",
        "public.orders",
    ]


def test_lines_put_errors_first() -> None:
    report = check([handler("orders")])  # also: users and posts have no handler
    lines = report.lines()
    assert [line.split(":")[0] for line in lines] == ["error", "warning", "warning"]
    assert lines[0] == (
        "error: public.orders: handled by "
        f"{handler('orders').name} but not in cdc.yaml: Debezium does not capture it, so they "
        "never run\n  fix: add `public.orders: {}` under `tables:` in cdc.yaml, then run "
        "`cdc connector apply`"
    )
    assert len(report.warnings) == 2
    assert not report.ok


# public.users partitioned by region: the publication lists the parent (via the root).
USERS_BY_REGION = dataclasses.replace(
    USERS,
    partitioned=True,
    partitions={("public", "users_eu"): "f", ("public", "users_us"): "f"},
)


def test_a_partitioned_parent_applied_is_clean() -> None:
    report = check(HANDLERS, live(tables={"public.users": USERS_BY_REGION, "public.posts": POSTS}))
    assert report.findings == [], report.lines()


def test_a_partition_with_another_identity_than_its_parent() -> None:
    users = dataclasses.replace(
        USERS_BY_REGION, partitions={**USERS_BY_REGION.partitions, ("public", "users_as"): "d"}
    )
    report = check(HANDLERS, live(tables={"public.users": users, "public.posts": POSTS}))
    by_subject = {f.subject: f for f in report.findings}
    assert by_subject["public.users"].problem.startswith(
        "partition(s) public.users_as (DEFAULT) lack the replica identity FULL"
    )
    # User reads `before` on updates: its handler is told why it will not get it.
    handler_finding = by_subject[f"handler {HANDLERS[0].name}"]
    assert "its partition(s) public.users_as (DEFAULT) are not REPLICA IDENTITY FULL" in (
        handler_finding.problem
    )
    # And its model, whose fields reject the nulls of a key-only delete there.
    model = by_subject[f"model {User.__module__}.{User.__qualname__} (public.users)"]
    assert "email, handle would be null" in model.problem
    assert len(report.findings) == 3, report.lines()


def test_partitions_published_under_their_own_names() -> None:
    published = frozenset(str(t) for t in publication_tables(WATCHED)) - {"public.users"}
    state = live(
        tables={"public.users": USERS_BY_REGION, "public.posts": POSTS},
        publication=published | {"public.users_eu", "public.users_us"},
        via_root=False,
    )
    finding = only(check(HANDLERS, state))
    assert finding.subject == "publication shop_pub"
    assert finding.problem.startswith("publish_via_partition_root is off")


def test_a_model_field_for_a_generated_column() -> None:
    users = dataclasses.replace(USERS, generated=frozenset({"handle"}))
    finding = only(check(HANDLERS, live(tables={"public.users": users, "public.posts": POSTS})))
    assert finding.subject == f"model {User.__module__}.{User.__qualname__} (public.users)"
    assert "'handle'" in finding.problem
    assert "generated in public.users" in finding.problem
    assert HANDLERS[0].name in finding.problem


def test_topics_with_fewer_replicas_than_the_cluster_allows() -> None:
    few = ClusterTopics(3, (TopicReplication("cdc.public.users", 1, 1),))
    finding = only(check(HANDLERS, live(topics=few)), Severity.WARNING)
    assert finding.subject == "topic cdc.public.users"

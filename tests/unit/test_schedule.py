"""Delayed and recurring events without the stack: due times (cron and intervals), the
catch-up rule, declarations (`@every`, ``schedules:``), and what a delayed `emit` refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdc import ConfigError, DomainEvent, EmitError, Fired, emit, every
from cdc.routing import handlers_of
from cdc.schedule.declare import declared
from cdc.schedule.scheduler import lock_key
from cdc.schedule.spec import MISSED_CAP, parse_spec
from cdc.tables.config import parse_watched_tables
from cdc.tables.schedule_store import delayed_table

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WATCHED = parse_watched_tables(
    """
outbox: {}
schedules:
  nightly:
    every: "0 3 * * *"
    event: report-due
    data: {kind: daily}
"""
)


def test_cron_due_times_are_utc() -> None:
    spec = parse_spec("0 3 * * *")
    assert spec.next_after(NOON) == datetime(2026, 1, 6, 3, tzinfo=UTC)
    # From another zone, the same instant: the same due time.
    tokyo = NOON.astimezone(datetime.now().astimezone().tzinfo)
    assert spec.next_after(tokyo) == datetime(2026, 1, 6, 3, tzinfo=UTC)
    assert parse_spec("*/5 * * * * */10").next_after(NOON) == NOON + timedelta(seconds=10)


def test_intervals_count_from_the_epoch() -> None:
    spec = parse_spec("3s")
    assert spec.interval == timedelta(seconds=3)
    assert spec.next_after(NOON) == NOON + timedelta(seconds=3)
    assert spec.next_after(NOON + timedelta(seconds=1)) == NOON + timedelta(seconds=3)
    assert parse_spec("5m").next_after(NOON + timedelta(minutes=1)) == NOON + timedelta(minutes=5)
    assert parse_spec(timedelta(hours=2)).text == "7200s"


@pytest.mark.parametrize("spec", ["0 3 * * *", "1h"])
def test_catch_up_fires_once_for_the_latest_missed_due_time(spec: str) -> None:
    """Down three days and a bit: one firing, for the latest due time, the rest counted."""
    s = parse_spec(spec)
    after, now = NOON - timedelta(days=3), NOON + timedelta(minutes=30)
    latest, missed = s.latest_due(after, now) or (None, None)
    if s.interval is None:
        assert (latest, missed) == (datetime(2026, 1, 5, 3, tzinfo=UTC), 2)
    else:
        assert (latest, missed) == (NOON, 71)
    assert latest is not None
    assert s.latest_due(latest, now) is None  # and nothing again until the next one
    assert s.latest_due(latest, s.next_after(latest)) == (s.next_after(latest), 0)


def test_a_due_time_exactly_now_is_due() -> None:
    for text in ("0 12 * * *", "1h"):
        assert parse_spec(text).latest_due(NOON - timedelta(hours=1), NOON) == (NOON, 0)


def test_a_long_outage_of_a_fast_schedule_is_counted_up_to_a_cap() -> None:
    s = parse_spec("* * * * * *")  # every second
    now = NOON + timedelta(days=1)
    assert s.latest_due(NOON, now) == (now, MISSED_CAP)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("every day", "neither a cron expression"),
        ("61 * * * *", "neither a cron expression"),
        ("0s", "shorter than 100 ms"),
        ("", "must be a cron expression or an interval"),
    ],
)
def test_bad_specs_are_refused(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_spec(spec)


def test_every_declares_a_schedule_and_its_handler() -> None:
    @every("*/5 * * * *", event="digest-due", data={"size": 10})
    def digest(event: DomainEvent[Fired], ctx: Any) -> None:
        pass

    (handler,) = handlers_of(digest)
    found = declared([handler], WATCHED)
    assert {s.name: (s.spec.text, s.event, s.data) for s in found} == {
        "digest-due": ("*/5 * * * *", "digest-due", {"size": 10}),
        "nightly": ("0 3 * * *", "report-due", {"kind": "daily"}),
    }
    fired = found[0].payload(NOON, 2)
    assert Fired.model_validate_json(fired.model_dump_json()) == fired


def test_two_schedules_of_one_name_are_refused() -> None:
    @every("1m", event="nightly")
    def other(event: DomainEvent[Fired], ctx: Any) -> None:
        pass

    with pytest.raises(ConfigError, match="declared twice"):
        declared(handlers_of(other), WATCHED)
    with pytest.raises(ConfigError, match="neither a cron"):
        every("whenever", event="x")(other)


def test_schedules_in_the_file_are_checked() -> None:
    with pytest.raises(ConfigError, match="neither a cron expression"):
        parse_watched_tables("outbox: {}\nschedules: {x: {every: soon, event: e}}")
    with pytest.raises(ConfigError, match="declare `outbox:` too"):
        parse_watched_tables("tables: {public.t: {}}\nschedules: {x: {every: 1m, event: e}}")


def test_the_delayed_table_and_lock_follow_the_outbox() -> None:
    assert delayed_table("public.outbox") == "public.outbox_scheduled"
    with pytest.raises(ConfigError, match="at most 53"):
        delayed_table("public." + "o" * 60)
    other = parse_watched_tables("outbox: {table: app.events}")
    assert lock_key(WATCHED) != lock_key(other)
    assert lock_key(WATCHED) == lock_key(parse_watched_tables("outbox: {}"))


class Recorder:
    """Takes what `emit` executes; a delayed emit runs one insert."""

    autocommit = False

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def execute(self, statement: Any, params: tuple[Any, ...]) -> None:
        self.statements.append((statement.as_string(None), params))


def test_a_delayed_emit_writes_the_schedule_table_only() -> None:
    conn = Recorder()
    at = NOON + timedelta(hours=1)
    event_id = emit(conn, "post", 7, "post-review-due", {"n": 1}, deliver_at=at)  # type: ignore[arg-type]
    emit(conn, "post", 7, "post-review-due", {}, deliver_after=90)  # type: ignore[arg-type]
    (first, params), (second, later) = conn.statements
    assert second == first
    assert first.startswith('INSERT INTO "public"."outbox_scheduled"')
    assert params[:3] == (event_id, at, None)
    assert params[3:7] == ("post", "7", "post-review-due", '{"n":1}')
    assert later[1:3] == (None, timedelta(seconds=90))


@pytest.mark.parametrize(
    ("when", "fragment"),
    [
        ({"deliver_at": NOON, "deliver_after": 5}, "not both"),
        ({"deliver_at": datetime(2026, 1, 1)}, "with a time zone"),
        ({"deliver_at": "tomorrow"}, "with a time zone"),
        ({"deliver_after": "5m"}, "a timedelta or seconds"),
    ],
)
def test_a_delayed_emit_refuses_unclear_times(when: dict[str, Any], fragment: str) -> None:
    with pytest.raises(EmitError, match=fragment):
        emit(Recorder(), "post", 7, "x", {}, **when)  # type: ignore[arg-type]

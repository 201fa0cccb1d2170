"""``cdc schedule``: delayed and recurring events."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cdc.cli.common import HandlersOpt, WatchedOpt, _consumer_setup, app, console

schedule_app = typer.Typer(no_args_is_help=True, help="Delayed and recurring events.")
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("list")
def schedule_list(
    tables: WatchedOpt = None,
    handlers: HandlersOpt = None,
    limit: Annotated[int, typer.Option(help="Delayed events shown, soonest first.")] = 20,
) -> None:
    """Show what is due: the waiting delayed events (soonest first) and each recurring
    schedule with the due time it last fired and its next one."""
    from cdc.connect import connect_database
    from cdc.schedule.declare import declared
    from cdc.tables.schedule_store import Statements, delayed_table

    settings, watched, found = _consumer_setup(tables, handlers)
    if watched.outbox is None:
        console.print("no outbox declared: nothing can be scheduled")
        return
    schedules = declared(found, watched)
    sql = Statements(watched)
    with connect_database(settings, timeout=10) as conn:
        total, due = conn.execute(sql.count).fetchone() or (0, 0)
        waiting = conn.execute(sql.pending, (limit,)).fetchall()
        states = {r[0]: r for r in conn.execute(sql.states).fetchall()}
        now = sql.now(conn)
    shown = Table(title=f"{total} delayed event(s) in {delayed_table(watched.outbox.table)}")
    for column in ("deliver at", "in", "event type", "aggregate", "id"):
        shown.add_column(column, no_wrap=True)
    for event_id, at, aggregate_type, aggregate_id, event_type in waiting:
        shown.add_row(
            at.isoformat(timespec="seconds"),
            f"{(at - now).total_seconds():.1f} s",
            event_type,
            f"{aggregate_type}/{aggregate_id}",
            str(event_id),
        )
    console.print(shown)
    if due:
        console.print(f"{due} of them past their time: is a `cdc run` up?")
    recurring = Table(title=f"{len(schedules)} recurring schedule(s)")
    for column in ("name", "every", "event type", "last fired (due time)", "next due", "fires"):
        recurring.add_column(column, no_wrap=True)
    for s in schedules:
        state = states.get(s.name)
        last = state[2] if state is not None and state[1] == s.spec.text else None
        recurring.add_row(
            s.name,
            s.spec.text,
            s.event,
            "never" if state is None or state[4] == 0 else state[2].isoformat(timespec="seconds"),
            s.spec.next_after(last or now).isoformat(timespec="seconds"),
            "0" if state is None else str(state[4]),
        )
    console.print(recurring)

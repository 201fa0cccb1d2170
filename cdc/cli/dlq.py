"""``cdc dlq``: the dead-letter topic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cdc.settings import Settings

if TYPE_CHECKING:
    from cdc.tables.config import WatchedTables

from cdc.cli.common import (
    HandlersOpt,
    WatchedOpt,
    _consumer_setup,
    _watched,
    app,
    console,
)

dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter topic.")
app.add_typer(dlq_app, name="dlq")


def _dead_letter_topic(settings: Settings, watched: WatchedTables) -> str:
    return settings.dead_letter_topic or f"{watched.connector.topic_prefix}.dlq"


WorkloadOpt = Annotated[
    str | None,
    typer.Option(
        "--workload",
        "-w",
        help="This workload's dead letters: its topic, its handlers, its replay position.",
    ),
]


@dlq_app.command("list")
def dlq_list(
    tables: WatchedOpt = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (the latest).")] = 50,
    workload: WorkloadOpt = None,
) -> None:
    """Show the parked records (where each came from, which handler failed, why, and
    whether a replay has taken it already), then the keys held behind them."""
    from cdc.runtime.dead_letter_tail import fold
    from cdc.runtime.held_keys import HeldKeys
    from cdc.runtime.replay import DeadLetterTopic, replay_group
    from cdc.runtime.workloads import resolve

    settings, watched = _watched(tables)
    if workload is not None:
        settings = resolve(workload, settings, watched).settings
    topic = _dead_letter_topic(settings, watched)
    with DeadLetterTopic(settings, topic, limits=watched.limits) as dlq:
        done = dlq.replayed_up_to(replay_group(settings))
        records = list(dlq)
    held = HeldKeys()
    for record in records:
        fold(held, record)
    parked = [p for p in records if p.release is None]
    table = Table(title=f"{topic}: {len(parked)} record(s)", title_justify="left")
    for column in (
        "at",
        "parked",
        "from",
        "table",
        "handler",
        "error",
        "tries",
        "reason",
        "replayed",
    ):
        table.add_column(column, overflow="fold")
    for p in parked[-limit:]:
        table.add_row(
            f"{p.partition}@{p.offset}",
            p.parked_at.strftime("%Y-%m-%d %H:%M:%S") if p.parked_at else "",
            f"{p.topic}[{p.source_partition}]@{p.source_offset}",
            p.table,
            p.handler,
            p.error,
            str(p.attempts),
            p.reason[:200],
            "yes" if p.offset < done.get(p.partition, 0) else "no",
        )
    console.print(table)
    holds = held.snapshot()
    keys = Table(
        title=f"held keys: {len(holds)} (their later changes wait behind the first)",
        title_justify="left",
    )
    for column in ("handler", "from", "key", "first at", "parked", "reason"):
        keys.add_column(column, overflow="fold")
    for (handler, source, key), hold in sorted(holds.items(), key=lambda kv: kv[1].first):
        keys.add_row(
            handler,
            source,
            key.decode(errors="replace")[-120:],
            f"{hold.partition}@{hold.first}",
            str(hold.count),
            hold.reason[:200],
        )
    console.print(keys)


@dlq_app.command("replay")
def dlq_replay(
    tables: WatchedOpt = None, handlers: HandlersOpt = None, workload: WorkloadOpt = None
) -> None:
    """Send each parked record not yet replayed back through the handler that failed it.
    One that fails again is parked again (at the end of the topic) for a later replay.
    With ``--workload``, with that workload's settings (retries, time limit, rate); records
    of other workloads' handlers in a shared topic are left to their own replay."""
    from rich.progress import Progress

    from cdc.routing import Router
    from cdc.runtime import Runtime
    from cdc.runtime.replay import DeadLetterTopic, replay, replay_group
    from cdc.runtime.workloads import plan

    settings, watched, found = _consumer_setup(tables, handlers)
    settings = settings.model_copy(update={"http_port": None})  # no probes for a one-off
    elsewhere: set[str] = set()
    if workload is None:
        runtime = Runtime(settings, watched, Router(found, watched.tables))
    else:
        ((lane, mine),) = plan(settings, watched, found, [workload])
        elsewhere = {h.name for h in found} - {h.name for h in mine}
        settings = lane.settings
        runtime = Runtime(
            settings, watched, Router(mine, watched.tables), workload=lane.name, rate=lane.rate
        )
    topic = _dead_letter_topic(settings, watched)
    try:
        with (
            DeadLetterTopic(settings, topic, replay_group(settings), watched.limits) as dlq,
            Progress(console=console) as progress,
        ):
            task = progress.add_task(f"replaying {topic}", total=dlq.pending)
            outcomes = replay(runtime, dlq, lambda *_: progress.advance(task), elsewhere)
    finally:
        runtime.close()
    summary = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "nothing to replay"
    console.print(f"replayed {sum(outcomes.values())} record(s): {summary}")
    if outcomes["parked_again"] or outcomes["no_handler"]:
        raise typer.Exit(1)

"""``cdc dlq``: the dead-letter topic."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

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
    from cdc.dlq import read_dead_letters

    settings, watched = _watched(tables)
    dlq = read_dead_letters(settings, watched, workload)
    topic, parked = dlq.topic, dlq.records
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
            "yes" if dlq.replayed(p) else "no",
        )
    console.print(table)
    holds = dlq.held
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
    from rich.progress import Progress, TaskID

    from cdc.dlq import replay_dead_letters

    settings, watched, found = _consumer_setup(tables, handlers)
    with Progress(console=console) as progress:
        task: list[TaskID] = []

        def started(topic: str, pending: int) -> None:
            task.append(progress.add_task(f"replaying {topic}", total=pending))

        outcomes = replay_dead_letters(
            settings, watched, found, workload, started, lambda *_: progress.advance(task[0])
        )
    summary = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "nothing to replay"
    console.print(f"replayed {sum(outcomes.values())} record(s): {summary}")
    if outcomes["parked_again"] or outcomes["no_handler"]:
        raise typer.Exit(1)

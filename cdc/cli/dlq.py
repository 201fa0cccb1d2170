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


@dlq_app.command("list")
def dlq_list(
    tables: WatchedOpt = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (the latest).")] = 50,
) -> None:
    """Show the parked records: where each came from, which handler failed, why, and
    whether a replay has taken it already."""
    from cdc.runtime.replay import DeadLetterTopic, replay_group

    settings, watched = _watched(tables)
    topic = _dead_letter_topic(settings, watched)
    with DeadLetterTopic(settings, topic, limits=watched.limits) as dlq:
        done = dlq.replayed_up_to(replay_group(settings))
        parked = list(dlq)
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


@dlq_app.command("replay")
def dlq_replay(tables: WatchedOpt = None, handlers: HandlersOpt = None) -> None:
    """Send each parked record not yet replayed back through the handler that failed it.
    One that fails again is parked again (at the end of the topic) for a later replay."""
    from rich.progress import Progress

    from cdc.routing import Router
    from cdc.runtime import Runtime
    from cdc.runtime.replay import DeadLetterTopic, replay, replay_group

    settings, watched, found = _consumer_setup(tables, handlers)
    settings = settings.model_copy(update={"http_port": None})  # no probes for a one-off
    runtime = Runtime(settings, watched, Router(found, watched.tables))
    topic = _dead_letter_topic(settings, watched)
    try:
        with (
            DeadLetterTopic(settings, topic, replay_group(settings), watched.limits) as dlq,
            Progress(console=console) as progress,
        ):
            task = progress.add_task(f"replaying {topic}", total=dlq.pending)
            outcomes = replay(runtime, dlq, lambda *_: progress.advance(task))
    finally:
        runtime.close()
    summary = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "nothing to replay"
    console.print(f"replayed {sum(outcomes.values())} record(s): {summary}")
    if outcomes["parked_again"] or outcomes["no_handler"]:
        raise typer.Exit(1)

"""Lag arithmetic and the `cdc lag` table, without Kafka."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cdc.lag import PartitionLag, lag_table, records_behind


@pytest.mark.parametrize(
    ("committed", "low", "end", "behind"),
    [
        (7, 0, 10, 3),  # committed: read from there
        (10, 0, 10, 0),  # caught up
        (None, 4, 10, 6),  # never committed: from the low watermark (earliest)
        (2, 4, 10, 6),  # committed offset deleted by retention: reset to earliest
        (12, 0, 10, 10),  # past the end (topic re-created): reset to earliest
        (None, 0, 0, 0),  # empty partition
    ],
)
def test_records_behind(committed: int | None, low: int, end: int, behind: int) -> None:
    assert records_behind(committed, low, end) == behind
    assert PartitionLag("public.t", "p.public.t", 0, committed, low, end).lag == behind


NOW_MS = 1_800_000_000_000


def render(rows: list[PartitionLag]) -> list[list[str]]:
    out = io.StringIO()
    Console(file=out, width=120).print(lag_table(rows, title="consumer group g", now_ms=NOW_MS))
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in out.getvalue().splitlines()
        if line.startswith("│")
    ]


def test_table_has_partitions_table_totals_and_grand_total() -> None:
    rows = [
        PartitionLag("public.users", "p.public.users", 0, 5, 0, 8, NOW_MS - 42_000),
        PartitionLag("public.users", "p.public.users", 1, None, 2, 6, NOW_MS - 3_725_000),
        PartitionLag("public.posts", "p.public.posts", None, None, 0, 0),
        PartitionLag("public.votes", "p.public.votes", 0, 9, 0, 9),
    ]
    assert render(rows) == [
        ["public.users", "0", "5", "8", "3", "42s"],
        ["public.users", "1", "-", "6", "4", "1h 2m"],
        ["public.users", "total", "", "", "7", "1h 2m"],
        ["public.posts", "no topic yet", "-", "-", "0", "-"],
        ["public.posts", "total", "", "", "0", "-"],
        ["public.votes", "0", "9", "9", "0", "-"],
        ["public.votes", "total", "", "", "0", "-"],
        ["all tables", "total", "", "", "7", "1h 2m"],
    ]


def test_table_without_rows_still_shows_the_grand_total() -> None:
    assert render([]) == [["all tables", "total", "", "", "0", "-"]]

"""Figures of a reliability run, one JSON file per run size (``short`` in CI, ``full`` by
``make reliability``): each test writes its own section; ``python -m tests.reliability.report``
prints them as the README's table."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]
FULL = os.environ.get("CDC_RELIABILITY", "short") == "full"
SIZE = "full" if FULL else "short"
REPORT = Path(
    os.environ.get("CDC_RELIABILITY_REPORT", ROOT / ".cdc" / "reliability" / f"{SIZE}.json")
)


def scaled(short: int, full: int) -> int:
    """``full`` in a full run, ``short`` otherwise."""
    return full if FULL else short


def record(section: str, **figures: Any) -> None:
    """Write one test's figures into the run's report (read, update, replace)."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    data.setdefault("run", {}).update(
        size=SIZE,
        machine=f"{platform.machine()}, {os.cpu_count()} cores",
        python=platform.python_version(),
    )
    data[section] = {"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    tmp = REPORT.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(REPORT)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else REPORT
    data = json.loads(path.read_text())
    print(f"run: {data.pop('run')}")
    for section, figures in data.items():
        print(f"\n## {section}")
        for key, value in figures.items():
            print(f"- {key}: {value}")


if __name__ == "__main__":
    main()

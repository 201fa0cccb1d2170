"""Local stack start-up: cold start with an empty and a warm artifact cache, restart on
existing state, a no-op `up`, and the components' resident memory once ready.

    python -m bench.stack_start            # warm cache only
    python -m bench.stack_start --empty    # also fetch into an empty cache and Maven repo

Prints one JSON object; the README's benchmark section records a run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdc.stack.jvm import jvm_home
from cdc.stack.local import COMPONENTS, LocalStack


def timed(step: Callable[[], Any]) -> float:
    start = time.monotonic()
    step()
    return round(time.monotonic() - start, 1)


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (PostgreSQL forks backends)."""
    total_kb = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[-1].split()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if int(proc.name) == pid or int(stat[1]) == pid:
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return round(total_kb / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--empty", action="store_true", help="also time an empty-cache fetch")
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    scratch = Path(tempfile.mkdtemp(prefix="cdc-bench-"))
    scratch.chmod(0o711)
    try:
        if args.empty:
            os.environ["CDC_CACHE_DIR"] = str(scratch / "cache")
            os.environ["MAVEN_OPTS"] = f"-Dmaven.repo.local={scratch / 'm2'}"
            result["fetch_empty_cache_s"] = timed(jvm_home)
        jvm_home()  # warm from here on
        stack = LocalStack(scratch / "stack")
        result["cold_start_warm_cache_s"] = timed(stack.up)
        result["noop_up_s"] = timed(stack.up)
        status = stack.status()
        memory = {n: rss_mb(int(str(status[n]["pid"]))) for n in COMPONENTS}
        result["rss_mb"] = memory | {"total": round(sum(memory.values()), 1)}
        stack.down()
        result["restart_existing_state_s"] = timed(stack.up)
        stack.down()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""The local stack's lifecycle: idempotent up, status, failures reported with the log tail,
and a down that leaves no process behind. Runs its own private stack."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from cdc.errors import StackError
from cdc.stack.local import COMPONENTS, LocalStack, port_open

pytestmark = pytest.mark.stack


def processes_mentioning(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(proc.name))
    return pids


def test_up_is_idempotent_and_down_leaves_nothing() -> None:
    # Not pytest's tmp_path: as root, PostgreSQL runs as another user and cannot enter it.
    state = Path(tempfile.mkdtemp(prefix="cdc-stack-test-"))
    stack = LocalStack(state)
    try:
        endpoints = stack.up()
        first = stack.status()
        assert all(s["ready"] for s in first.values()), first
        pids = {name: first[name]["pid"] for name in COMPONENTS}
        assert LocalStack(state).up() == endpoints  # a second `up` finds it running
        assert {n: s["pid"] for n, s in LocalStack(state).status().items()} == pids
        for name in COMPONENTS:
            assert (state / "logs" / f"{name}.log").stat().st_size > 0
        ports = list(stack.state.ports.values())
    finally:
        stack.down()
    assert processes_mentioning(str(state)) == []
    assert not any(port_open(p) for p in ports)
    assert not any(s["running"] for s in LocalStack(state).status().values())

    # A component that cannot start is named, with the tail of its log.
    (state / "postgres" / "postgresql.auto.conf").write_text("this is not a setting\n")
    with pytest.raises(StackError) as info:
        LocalStack(state).up()
    assert info.value.component == "postgres"
    assert "syntax error" in info.value.log_tail
    LocalStack(state).destroy()
    assert processes_mentioning(str(state)) == []
    assert not state.exists()
    shutil.rmtree(state, ignore_errors=True)

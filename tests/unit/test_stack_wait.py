"""`running_stack()` with `CDC_STACK_DIR` set uses that stack or says why it cannot: it never
starts (and later destroys) a private stack behind the user's back."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdc.errors import StackError
from cdc.stack.local import LocalStack, StackState
from cdc.testing import running_stack
from cdc.testing.stack import wait_ready


def test_a_stack_dir_where_nothing_runs_is_an_error_not_a_private_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDC_STACK", "native")
    monkeypatch.setenv("CDC_STACK_DIR", str(tmp_path))
    with (
        pytest.raises(StackError, match=f"no stack runs in CDC_STACK_DIR={tmp_path}"),
        running_stack(),
    ):
        pass
    assert list(tmp_path.iterdir()) == []  # nothing was started there either


def test_a_stack_that_runs_but_is_not_ready_is_waited_for_then_named(tmp_path: Path) -> None:
    """A component process that runs (as a starting one does) but never answers: waited for
    until the timeout, then an error naming every component that is not ready."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    # A live process whose command line names the state directory, like the stack's own.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path)])
    try:
        cmdline = Path(f"/proc/{sleeper.pid}/cmdline")
        while str(tmp_path).encode() not in cmdline.read_bytes():  # until exec is done
            time.sleep(0.01)
        ports = {name: port for name in ("postgres", "kafka", "connect", "registry")}
        StackState(ports=ports, pids={"kafka": sleeper.pid}).save(tmp_path / "state.json")
        with pytest.raises(StackError, match=r"not ready after 2s") as caught:
            wait_ready(LocalStack(tmp_path), timeout=2)
        assert caught.value.component == "connect, kafka, postgres, registry"
    finally:
        sleeper.kill()
        sleeper.wait()

"""Start the real stack for a test run: local processes (``CDC_STACK=native``) or containers
(``CDC_STACK=containers``). Native is the default where no Docker engine answers."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from cdc.errors import StackError
from cdc.stack.endpoints import StackEndpoints
from cdc.stack.local import LocalStack

log = structlog.get_logger("cdc.testing")
READY_TIMEOUT_S = 180.0


def docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def stack_mode() -> str:
    mode = os.environ.get("CDC_STACK") or ("containers" if docker_available() else "native")
    if mode not in ("native", "containers"):
        raise ValueError(f"CDC_STACK must be 'native' or 'containers', not {mode!r}")
    return mode


@dataclass(frozen=True)
class RunningStack:
    """A started stack: where it answers, and how to restart one of its components
    (``postgres``, ``kafka``, ``connect``, ``registry``; ``crash=True`` kills it outright;
    ``down_s``: how long it stays down) on the same address and data, for fault drills."""

    endpoints: StackEndpoints
    _restart: Callable[[str, bool, float], None]

    def restart(self, component: str, *, crash: bool = False, down_s: float = 0.0) -> None:
        self._restart(component, crash, down_s)


@contextlib.contextmanager
def running_stack() -> Iterator[RunningStack]:
    """A running stack for the duration of the block.

    Native: with ``$CDC_STACK_DIR`` set, the stack there is used and left running (waited
    for while it starts; a StackError when it does not run or does not become ready);
    without it a private one is started in a temporary directory and removed afterwards."""
    if stack_mode() == "containers":
        from cdc.testing.containers import container_stack

        with container_stack() as containers:
            yield containers
        return
    if env_dir := os.environ.get("CDC_STACK_DIR"):
        shared = LocalStack(Path(env_dir))
        yield _local(shared, wait_ready(shared))
        return
    private = LocalStack(Path(tempfile.mkdtemp(prefix="cdc-stack-")))
    try:
        yield _local(private, private.up())
    finally:
        private.destroy()


def wait_ready(stack: LocalStack, timeout: float = READY_TIMEOUT_S) -> StackEndpoints:
    """The endpoints of the stack in ``stack.dir`` once every component is ready. A stack
    partly up (starting, or a component restarting) is waited for; one that does not run at
    all, or is still not ready after ``timeout``, is a StackError naming what is not."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        status = stack.status()
        waiting = sorted(name for name, s in status.items() if not s["ready"])
        if not waiting:
            return stack.endpoints()
        if not any(s["running"] for s in status.values()):
            raise StackError(
                "stack",
                f"no stack runs in CDC_STACK_DIR={stack.dir}: start it with `cdc stack up` "
                "(that variable set), or unset CDC_STACK_DIR for a private stack per run",
            )
        if time.monotonic() > deadline:
            raise StackError(
                ", ".join(waiting),
                f"not ready after {timeout:.0f}s in CDC_STACK_DIR={stack.dir}; see "
                + ", ".join(str(status[name]["log"]) for name in waiting),
            )
        if not said:
            log.warning("stack.waiting", dir=str(stack.dir), not_ready=waiting)
            said = True
        time.sleep(1.0)


def _local(stack: LocalStack, endpoints: StackEndpoints) -> RunningStack:
    return RunningStack(
        endpoints, lambda name, crash, down_s: stack.restart(name, crash=crash, down_s=down_s)
    )


@contextlib.contextmanager
def start_stack() -> Iterator[StackEndpoints]:
    """The endpoints of a running stack for the duration of the block (see ``running_stack``)."""
    with running_stack() as stack:
        yield stack.endpoints

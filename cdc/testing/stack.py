"""Start the real stack for a test run: local processes (``CDC_STACK=native``) or containers
(``CDC_STACK=containers``). Native is the default where no Docker engine answers."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cdc.stack.endpoints import StackEndpoints
from cdc.stack.local import LocalStack


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

    Native: a running stack in ``$CDC_STACK_DIR`` is reused and left running; otherwise a
    private one is started in a temporary directory and removed afterwards."""
    if stack_mode() == "containers":
        from cdc.testing.containers import container_stack

        with container_stack() as containers:
            yield containers
        return
    if env_dir := os.environ.get("CDC_STACK_DIR"):
        shared = LocalStack(Path(env_dir))
        if all(s["ready"] for s in shared.status().values()):
            yield _local(shared, shared.endpoints())
            return
    private = LocalStack(Path(tempfile.mkdtemp(prefix="cdc-stack-")))
    try:
        yield _local(private, private.up())
    finally:
        private.destroy()


def _local(stack: LocalStack, endpoints: StackEndpoints) -> RunningStack:
    return RunningStack(
        endpoints, lambda name, crash, down_s: stack.restart(name, crash=crash, down_s=down_s)
    )


@contextlib.contextmanager
def start_stack() -> Iterator[StackEndpoints]:
    """The endpoints of a running stack for the duration of the block (see ``running_stack``)."""
    with running_stack() as stack:
        yield stack.endpoints

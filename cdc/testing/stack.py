"""Start the real stack for a test run: local processes (``CDC_STACK=native``) or containers
(``CDC_STACK=containers``). Native is the default where no Docker engine answers."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
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


@contextlib.contextmanager
def start_stack() -> Iterator[StackEndpoints]:
    """A running stack for the duration of the block.

    Native: a running stack in ``$CDC_STACK_DIR`` is reused and left running; otherwise a
    private one is started in a temporary directory and removed afterwards."""
    if stack_mode() == "containers":
        from cdc.testing.containers import container_stack

        with container_stack() as endpoints:
            yield endpoints
        return
    if env_dir := os.environ.get("CDC_STACK_DIR"):
        stack = LocalStack(Path(env_dir))
        if all(s["ready"] for s in stack.status().values()):
            yield stack.endpoints()
            return
    stack = LocalStack(Path(tempfile.mkdtemp(prefix="cdc-stack-")))
    try:
        yield stack.up()
    finally:
        stack.destroy()

"""Handlers: the decorators that declare them, and finding them by importing modules.

A handler is a function of a change (or a domain event) and a context, sync or async:

    @on_change("public.users", ops="cu", columns=["email"], model=User)
    def email_changed(change: Change[User], ctx: Context) -> None: ...

    @on_event("order-placed", model=OrderPlaced)
    def reserve_stock(event: DomainEvent[OrderPlaced], ctx: Context) -> None: ...

Declaring it is all the registering there is: `discover("handlers")` imports the module or
package (every submodule) and collects what the decorator marked.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import textwrap
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, TypeVar

from pydantic import BaseModel

from cdc.errors import ConfigError
from cdc.events import Op
from cdc.routing.declared import EventHandler, Handler, TableHandler, TransactionHandler
from cdc.tables.config import IDENTIFIER
from cdc.tables.workloads import DEFAULT_WORKLOAD, WORKLOAD_NAME

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__cdc_handlers__"
_STREAMING = frozenset({Op.CREATE, Op.UPDATE, Op.DELETE})
_ALLOWED = _STREAMING | {Op.TRUNCATE}


def on_event(
    event_type: str,
    *,
    model: type[BaseModel] | None = None,
    ledger: bool = False,
    workload: str = DEFAULT_WORKLOAD,
    attempts: int | None = None,
    timeout_s: float | None = None,
    keep_order: bool | None = None,
) -> Callable[[F], F]:
    """Declare a handler for the domain events of type ``event_type`` (written with
    `cdc.emit` to the outbox declared in the watched-tables file), whatever their aggregate.

    ``model``: a pydantic model for the payload; a payload that does not fit it goes to the
    dead-letter topic with the validation error.
    ``ledger``: effectively once, keyed by the event's id, as for `on_change`. A handler that
    emits follow-up events does so in its ``ctx.connection()`` block, so the follow-ups and the
    ledger row commit together.
    ``workload``, ``attempts``, ``timeout_s``, ``keep_order``: as for `on_change` (an
    event's key is its aggregate id).
    """

    def mark(func: F) -> F:
        name = f"{func.__module__}.{func.__qualname__}"
        problems = _signature_problems(func)
        if not isinstance(event_type, str) or not event_type.strip():
            problems.append(f"event type {event_type!r} must be a non-empty string")
        problems += _model_problems(model) + _lane_problems(workload, attempts, timeout_s)
        if problems:
            raise ConfigError(f"handler {name}", problems)
        handler = EventHandler(
            func, event_type, model, name, ledger, workload, attempts, timeout_s, keep_order
        )
        setattr(func, _MARK, (*getattr(func, _MARK, ()), handler))
        return func

    return mark


def on_transaction(
    *tables: str,
    reads_before: bool | None = None,
    ledger: bool = False,
    workload: str = DEFAULT_WORKLOAD,
    attempts: int | None = None,
    timeout_s: float | None = None,
) -> Callable[[F], F]:
    """Declare a handler of whole transactions on ``tables`` (each ``schema.table``, or
    ``table`` in ``public``): it gets `cdc.Changes`, every change one committed transaction
    made to them, in the order the transaction made them (across topics and partitions),
    with ``changes.transaction`` its id; once a transaction, after all of it arrived.

    Needs the connector's transaction metadata (``transaction_metadata: true`` in the
    watched-tables file; ``cdc check`` says when it is off). The offsets of a transaction's
    changes move once the handler is done with it: a crash redelivers the whole of it.
    ``ledger``: effectively once, keyed by the transaction's id.
    ``workload``, ``attempts``, ``timeout_s``, ``keep_order``: as for `on_change` (an
    event's key is its aggregate id).
    """

    def mark(func: F) -> F:
        name = f"{func.__module__}.{func.__qualname__}"
        problems = _signature_problems(func)
        names: list[str] = []
        for table in tables:
            full = table if "." in table else f"public.{table}"
            parts = full.split(".")
            if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts):
                problems.append(f"table {table!r} must be schema.table, lowercase, unquoted")
            names.append(full)
        if not tables:
            problems.append("name the tables whose transactions the handler takes")
        problems += _lane_problems(workload, attempts, timeout_s)
        if problems:
            raise ConfigError(f"handler {name}", problems)
        before = reads_before
        if before is None:
            before = _reads_before(func, anywhere=True)
        handler = TransactionHandler(
            func, frozenset(names), before, name, ledger, workload, attempts, timeout_s
        )
        setattr(func, _MARK, (*getattr(func, _MARK, ()), handler))
        return func

    return mark


def _signature_problems(func: Callable[..., Any]) -> list[str]:
    try:
        inspect.signature(func).bind(None, None)
    except (TypeError, ValueError):
        return ["a handler takes two positional arguments: (event, ctx)"]
    return []


def _lane_problems(workload: str, attempts: int | None, timeout_s: float | None) -> list[str]:
    problems = []
    if not isinstance(workload, str) or not WORKLOAD_NAME.match(workload):
        problems.append(
            f"workload {workload!r} must be lowercase letters, digits and '-', "
            "starting with a letter, at most 40"
        )
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        problems.append(f"attempts must be a positive number, not {attempts!r}")
    if timeout_s is not None and not (isinstance(timeout_s, int | float) and timeout_s > 0):
        problems.append(f"timeout_s must be a number of seconds over 0, not {timeout_s!r}")
    return problems


def _model_problems(model: type[BaseModel] | None) -> list[str]:
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
        return [f"model must be a pydantic model class, not {model!r}"]
    return []


def on_change(
    table: str,
    *,
    ops: Iterable[Op | str] | str = "cud",
    columns: Iterable[str] | None = None,
    snapshot_reads: bool | None = None,
    model: type[BaseModel] | None = None,
    reads_before: bool | None = None,
    ledger: bool = False,
    batch: int | None = None,
    max_wait_s: float | None = None,
    debounce_s: float | None = None,
    workload: str = DEFAULT_WORKLOAD,
    attempts: int | None = None,
    timeout_s: float | None = None,
    keep_order: bool | None = None,
) -> Callable[[F], F]:
    """Declare a handler for ``table`` (``schema.table``, or ``table`` in ``public``).

    ``ops``: which of ``c`` (insert), ``u`` (update), ``d`` (delete), ``t`` (truncate).
    ``columns``: run on an update only when one of these changed.
    ``snapshot_reads``: also get the rows a snapshot reads (``op r``); default: the table's
    option in the watched-tables file.
    ``model``: a pydantic model (best a ``cdc.Row``) that types ``before`` / ``after``.
    ``reads_before``: whether the handler needs the old row; found from the code when not
    given, so ``cdc check`` can demand REPLICA IDENTITY FULL.
    ``ledger``: effectively once. ``ctx.connection()`` records the change in the
    processed-changes table inside the handler's own transaction; a change already recorded
    is skipped (outcome ``duplicate``). The handler does its writes in one such block.
    ``batch``: the handler takes a ``list[Change]`` of up to this many changes (a sink's bulk
    write), in partition order (so in order per key), called once the list is full,
    ``max_wait_s`` after its first change, or when the open lists hold half the in-flight
    window (which the consumer widens to twice the sum of the batch sizes). Their offsets
    move once the call is done. A list that keeps failing is split until the change that
    fails is found: only that one goes to the dead-letter topic.
    ``workload``: the lane it runs in (declared under ``workloads:`` in the watched-tables
    file: its own consumer group, concurrency, window, retries, time limit and rate).
    ``attempts``: attempts in all, over the workload's. ``timeout_s``: an attempt running
    longer fails and is retried, over the workload's.
    ``keep_order``: once a change of a key is parked in the dead-letter topic, park the
    handler's later changes of that key behind it, unrun, until `cdc dlq replay` has replayed
    them in order (default: the workload's ``keep_order``, true). False: later changes run at
    once, and a replay may apply an older change over a newer one.
    ``debounce_s``: run once per key (the row's primary key) with its latest change, once
    the key has had no change for this long, or ``max_wait_s`` (default 10 times
    ``debounce_s``) after its first change held; the earlier changes are coalesced into
    that run, and their offsets move once it is done. (Its ``before`` is the row before that
    latest change.)
    """

    def mark(func: F) -> F:
        handler = _declare(func, table, ops, columns, snapshot_reads, model, reads_before, ledger)
        problems = _lane_problems(workload, attempts, timeout_s)
        if problems:
            raise ConfigError(f"handler {handler.name}", problems)
        handler = dataclasses.replace(
            handler,
            workload=workload,
            attempts=attempts,
            timeout_s=timeout_s,
            keep_order=keep_order,
        )
        if debounce_s is not None:
            handler = _debounced(handler, debounce_s, max_wait_s, batch)
        elif batch is not None or max_wait_s is not None:
            wait = 1.0 if max_wait_s is None else max_wait_s
            handler = _batched(handler, batch, wait, reads_before)
        setattr(func, _MARK, (*getattr(func, _MARK, ()), handler))
        return func

    return mark


def _declare(
    func: Callable[..., Any],
    table: str,
    ops: Iterable[Op | str] | str,
    columns: Iterable[str] | None,
    snapshot_reads: bool | None,
    model: type[BaseModel] | None,
    reads_before: bool | None,
    ledger: bool,
) -> TableHandler:
    name = f"{func.__module__}.{func.__qualname__}"
    problems: list[str] = []
    full = table if "." in table else f"public.{table}"
    parts = full.split(".")
    if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts):
        problems.append(f"table {table!r} must be schema.table with lowercase unquoted names")
    wanted: set[Op] = set()
    for op in ops:
        try:
            wanted.add(Op(op))
        except ValueError:
            problems.append(f"unknown operation {op!r}: use c, u, d or t")
    if Op.READ in wanted:
        problems.append("snapshot reads are asked for with snapshot_reads=True, not op 'r'")
    elif wanted - _ALLOWED:
        problems.append(f"ops may only be c, u, d and t, not {sorted(wanted - _ALLOWED)}")
    if not wanted:
        problems.append("ops is empty: the handler would never run")
    cols = None if columns is None else frozenset(columns)
    if cols is not None and not cols:
        problems.append("columns is empty: the handler would never run on an update")
    problems += _model_problems(model) + _signature_problems(func)
    if problems:
        raise ConfigError(f"handler {name}", problems)
    needs_before = reads_before
    if needs_before is None:
        needs_before = (cols is not None and Op.UPDATE in wanted) or _reads_before(func)
    return TableHandler(
        func=func,
        table=full,
        ops=frozenset(wanted),
        columns=cols,
        snapshot_reads=snapshot_reads,
        model=model,
        reads_before=needs_before,
        name=name,
        ledger=ledger,
    )


def _batched(
    handler: TableHandler, batch: int | None, max_wait_s: float, reads_before: bool | None
) -> TableHandler:
    problems = []
    if batch is None:
        problems.append("max_wait_s is for batch handlers: give batch= as well")
    elif isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        problems.append(f"batch must be a positive number of changes, not {batch!r}")
    if not 0 < max_wait_s <= 3600:
        problems.append(f"max_wait_s must be over 0 and at most 3600 seconds, not {max_wait_s!r}")
    if handler.ledger:
        # The ledger records one change per handler run; a bulk write is made idempotent by
        # the write itself (an upsert, or a COPY into a table keyed by the change).
        problems.append("ledger=True is for handlers of one change; a batch handler upserts")
    if problems:
        raise ConfigError(f"handler {handler.name}", problems)
    if reads_before is None and not handler.reads_before:
        reads_before = _reads_before(handler.func, anywhere=True)  # any change of the list
    return dataclasses.replace(
        handler, batch=batch, max_wait_s=max_wait_s, reads_before=bool(reads_before)
    )


def _debounced(
    handler: TableHandler, debounce_s: float, max_wait_s: float | None, batch: int | None
) -> TableHandler:
    """A handler run once per key with its latest change. (The ledger, if asked for, keys
    on that change: fine, it is the one the handler ran with.)"""
    problems = []
    if batch is not None:
        problems.append("debounce_s runs a handler with one change: not with batch=")
    if isinstance(debounce_s, bool) or not isinstance(debounce_s, int | float):
        problems.append(f"debounce_s must be a number of seconds, not {debounce_s!r}")
    elif not 0 < debounce_s <= 3600:
        problems.append(f"debounce_s must be over 0 and at most 3600 seconds, not {debounce_s}")
    elif max_wait_s is None:
        max_wait_s = min(10 * debounce_s, 3600)
    elif not debounce_s <= max_wait_s <= 3600:
        problems.append(
            f"max_wait_s must be at least debounce_s and at most 3600 seconds, not {max_wait_s}"
        )
    if problems or max_wait_s is None:  # None only where debounce_s is not a number
        raise ConfigError(f"handler {handler.name}", problems)
    return dataclasses.replace(handler, debounce_s=debounce_s, max_wait_s=max_wait_s)


def _reads_before(func: Callable[..., Any], *, anywhere: bool = False) -> bool:
    """Whether the function body touches ``<change>.before`` or ``<change>.changed_columns``
    (``anywhere``: on any name, as a batch handler's loop over its list does).

    A static look at the source: it sees what the handler reads directly, not through
    helpers it calls (declare ``reads_before=True`` for those)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return False
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.args.args:
        return False
    param = node.args.args[0].arg
    return any(
        isinstance(n, ast.Attribute)
        and n.attr in ("before", "changed_columns")
        and isinstance(n.value, ast.Name)
        and (anywhere or n.value.id == param)
        for n in ast.walk(node)
    )


def handlers_of(obj: Any) -> tuple[Handler, ...]:
    """The declarations the decorator attached to a function."""
    found = getattr(obj, _MARK, ())
    return found if isinstance(found, tuple) else ()


def discover(modules: Iterable[str]) -> list[Handler]:
    """Import each module (a package with all its submodules) and collect its handlers."""
    found: dict[int, Handler] = {}
    for name in modules:
        for module in _import_tree(name):
            for obj in vars(module).values():
                for handler in handlers_of(obj):
                    found.setdefault(id(handler), handler)
    return list(found.values())


def _import_tree(name: str) -> list[ModuleType]:
    try:
        root = importlib.import_module(name)
        modules = [root]
        for info in pkgutil.walk_packages(getattr(root, "__path__", []), f"{name}."):
            modules.append(importlib.import_module(info.name))
    except ImportError as exc:
        raise ConfigError(f"handlers {name!r}", [f"cannot import: {exc}"]) from exc
    return modules

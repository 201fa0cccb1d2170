"""The examples in the docs and the README run, without Kafka or PostgreSQL.

Every Python block must parse and every ``cdc.yaml`` block must load with the project's own
models. A block right after ``<!-- sample: NAME -->`` is run: its code is executed as a
module, and ``CHECKS[NAME]`` runs its handlers through the test kit (`cdc.testing`) on changes
from `ChangeFactory`, against `FakeDatabase`, a stand-in that records each statement."""

from __future__ import annotations

import ast
import contextlib
import linecache
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.events import Changes
from cdc.runtime.context import Resources
from cdc.settings import Settings
from cdc.tables.config import WatchedTables, parse_watched_tables
from cdc.testing import ChangeFactory, Outcome, run_handler

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(
    r"^(?:<!-- sample: (?P<name>[a-z0-9-]+) -->\n)?```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
CDC_YAML_KEYS = set(WatchedTables.model_fields)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    body: str
    name: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for path in PAGES:
        text = path.read_text()
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start("lang")) + 1
            found.append(Block(path, line, m["lang"], m["body"], m["name"]))
    return found


BLOCKS = _blocks()
SAMPLES = {b.name: b for b in BLOCKS if b.name}


def _ids(blocks: list[Block]) -> list[str]:
    return [b.where for b in blocks]


PYTHON = [b for b in BLOCKS if b.lang == "python"]
YAML = [b for b in BLOCKS if b.lang == "yaml"]


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_blocks_parse(block: Block) -> None:
    ast.parse(block.body, block.where)


def _watched(block: Block) -> WatchedTables:
    """A cdc.yaml example loaded as `cdc.tables.config` loads the file; a fragment (only
    ``workloads:``, say) gets the table, or the outbox, that a whole file needs."""
    doc = yaml.safe_load(block.body)
    if "tables" not in doc and "outbox" not in doc:
        doc["tables"] = {"public.example": {}}
    if "schedules" in doc:
        doc.setdefault("outbox", {})
    return parse_watched_tables(yaml.safe_dump(doc), block.where)


@pytest.mark.parametrize("block", YAML, ids=_ids(YAML))
def test_yaml_blocks_load(block: Block) -> None:
    doc = yaml.safe_load(block.body)
    assert isinstance(doc, dict), f"{block.where}: not a mapping"
    if set(doc) <= CDC_YAML_KEYS:
        _watched(block)


def test_every_sample_is_checked() -> None:
    assert sorted(SAMPLES) == sorted(CHECKS)


# The stand-in for the application database.


@dataclass
class FakeCursor:
    db: FakeDatabase
    rowcount: int = 1

    def execute(self, query: Any, params: Any = None) -> FakeCursor:
        return self.db.execute(query, params)

    def executemany(self, query: Any, params: Any) -> None:
        for one in params:
            self.db.execute(query, one)

    def fetchone(self) -> tuple[Any, ...]:
        return (1,)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@dataclass
class FakeConnection:
    db: FakeDatabase
    autocommit: bool = False

    def execute(self, query: Any, params: Any = None) -> FakeCursor:
        return self.db.execute(query, params)

    def cursor(self) -> FakeCursor:
        return FakeCursor(self.db)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield


@dataclass
class FakeDatabase:
    """Records each statement; the ledger's claims are remembered, so a change handled
    twice by a ledger handler is a duplicate, as in PostgreSQL."""

    statements: list[tuple[str, Any]] = field(default_factory=list)
    claims: set[Any] = field(default_factory=set)

    def execute(self, query: Any, params: Any = None) -> FakeCursor:
        text = query if isinstance(query, str) else repr(query)
        if "cdc_processed_changes" in text:  # the ledger's own statements
            first = "INSERT" in text and params not in self.claims
            self.claims.add(params)
            return FakeCursor(self, rowcount=int(first))
        self.statements.append((text, params))
        return FakeCursor(self)

    @contextlib.contextmanager
    def connection(self, **_: Any) -> Iterator[FakeConnection]:
        yield FakeConnection(self)

    def params(self) -> list[Any]:
        return [params for _, params in self.statements]


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> FakeDatabase:
    database = FakeDatabase()
    monkeypatch.setattr(Resources, "pool", lambda self: database)
    return database


def _run(name: str, **given: Any) -> dict[str, Any]:
    """The sample's code executed as a module (its source kept, as handler discovery reads
    it), with ``given`` names defined first."""
    block = SAMPLES[name]
    filename = f"<{block.where}>"
    linecache.cache[filename] = (len(block.body), None, block.body.splitlines(True), filename)
    module = types.ModuleType(f"docs_sample_{name.replace('-', '_')}")
    module.__dict__.update(given)
    sys.modules[module.__name__] = module  # pydantic resolves a model's types through it
    exec(compile(block.body, filename, "exec"), module.__dict__)  # noqa: S102 - our own docs
    return module.__dict__


def _yaml(name: str) -> WatchedTables:
    return _watched(SAMPLES[name])


def _module(monkeypatch: pytest.MonkeyPatch, name: str, namespace: dict[str, Any]) -> None:
    """``namespace`` importable as ``name`` (and its package), for a sample importing it."""
    module = types.ModuleType(name)
    module.__dict__.update(namespace)
    package = name.rpartition(".")[0]
    monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
    monkeypatch.setitem(sys.modules, name, module)


USERS_FULL = parse_watched_tables("tables: {public.users: {replica_identity: full}}")
Check = Callable[..., None]
CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    def register(func: Check) -> Check:
        CHECKS[name] = func
        return func

    return register


@check("index-welcome")
def _index_welcome(db: FakeDatabase, **_: Any) -> None:
    welcome = _run("index-welcome")["welcome"]
    run = run_handler(welcome, ChangeFactory().insert("users", {"id": 7, "handle": "ada"}))
    assert run.outcome is Outcome.DONE, run.reason
    assert db.params()[0][1:] == (7, "Welcome, ada!")


@check("readme-handler")
def _readme_handler(db: FakeDatabase, **_: Any) -> None:
    email_changed = _run("readme-handler")["email_changed"]
    user = {"id": 1, "email": "a@example.org", "handle": "ada"}
    change = ChangeFactory(USERS_FULL).update("users", user, email="b@example.org")
    assert run_handler(email_changed, change).outcome is Outcome.DONE
    assert db.params()[0][1:] == (1, "a@example.org is now b@example.org")


@check("email-changed")
def _email_changed(db: FakeDatabase, **_: Any) -> None:
    email_changed = _run("email-changed")["email_changed"]
    changes = ChangeFactory(USERS_FULL)
    user = {"id": 1, "email": "a@example.org", "handle": "ada"}
    run = run_handler(email_changed, changes.update("users", user, email="b@example.org"))
    assert run.outcome is Outcome.DONE, run.reason
    assert db.params()[0][1:] == (1, "now b@example.org")
    renamed = changes.update("users", user, handle="grace")
    assert run_handler(email_changed, renamed).outcome is Outcome.SKIPPED


@check("to-warehouse")
def _to_warehouse(db: FakeDatabase, **_: Any) -> None:
    to_warehouse = _run("to-warehouse")["to_warehouse"]
    orders = ChangeFactory()
    batch = [orders.insert("orders", {"id": i, "total": 10 * i}) for i in (1, 2, 3)]
    batch.append(orders.delete("orders", {"id": 1}))
    run = run_handler(to_warehouse, batch)
    assert run.outcome is Outcome.DONE, run.reason
    assert db.params() == [(1, 10), (2, 20), (3, 30)]


@check("index-post")
def _index_post(db: FakeDatabase, **_: Any) -> None:
    index: dict[Any, Any] = {}
    search = types.SimpleNamespace(
        put=lambda row: index.__setitem__(row["id"], row["title"]),
        delete=index.pop,
    )
    index_post = _run("index-post", search=search)["index_post"]
    posts = ChangeFactory()
    post = {"id": 3, "title": "COBOL"}
    assert run_handler(index_post, posts.insert("posts", post)).outcome is Outcome.DONE
    assert index == {3: "COBOL"}
    assert run_handler(index_post, posts.delete("posts", post)).outcome is Outcome.DONE
    assert index == {}


@check("order-placed")
def _order_placed(db: FakeDatabase, **_: Any) -> None:
    order_placed = _run("order-placed")["order_placed"]
    made = ChangeFactory()
    changes = Changes(
        [
            made.insert("orders", {"id": 1}),
            made.insert("order_lines", {"id": 1, "order_id": 1, "amount": 5}),
            made.insert("order_lines", {"id": 2, "order_id": 1, "amount": 7}),
        ],
        "801",
    )
    assert run_handler(order_placed, changes).outcome is Outcome.DONE
    assert db.params() == [("801", 12)]
    assert run_handler(order_placed, changes).outcome is Outcome.DUPLICATE  # the ledger


@check("count-comments")
def _count_comments(db: FakeDatabase, **_: Any) -> None:
    count_comments = _run("count-comments")["count_comments"]
    comment = ChangeFactory().insert("comments", {"id": 5, "author_id": 2})
    assert run_handler(count_comments, comment).outcome is Outcome.DONE
    assert run_handler(count_comments, comment).outcome is Outcome.DUPLICATE
    assert db.params() == [(2,)]


@check("emit")
def _emit(db: FakeDatabase, **_: Any) -> None:
    submit = _run("emit")["submit"]
    assert submit(FakeConnection(db), 2, "COBOL") == 1
    inserted = [params for sql, params in db.statements if "outbox" in sql and "INSERT" in sql]
    assert len(inserted) == 1
    assert "post-submitted" in inserted[0]


@check("review")
def _review(db: FakeDatabase, **_: Any) -> None:
    from cdc.events import DomainEvent, KafkaCoordinates

    review = _run("review", PostSubmitted=_run("emit")["PostSubmitted"])["review"]
    event = DomainEvent[Any](
        id="0b9f4c1e-2b8e-4d0f-9a59-4a3f7b1d2c10",
        type="post-submitted",
        aggregate_type="post",
        aggregate_id="9",
        payload={"post_id": 9, "title": "Buy spam now"},
        kafka=KafkaCoordinates("outbox.event.post", 0, 12),
    )
    run = run_handler(review, event)
    assert run.outcome is Outcome.DONE, run.reason
    assert db.params()[0] == (9, False)
    assert any("post-reviewed" in str(params) for params in db.params())
    assert run_handler(review, event).outcome is Outcome.DUPLICATE


@check("order-model")
def _order_model(**_: Any) -> None:
    order = _run("order-model")["Order"].model_validate(
        {"id": 1, "total": "12.50", "placed_at": "2024-05-01T10:00:00", "ships_on": None}
        | {"notes": None}
    )
    assert str(order.total) == "12.50"


@check("tutorial-handler")
def _tutorial_handler(db: FakeDatabase, **_: Any) -> None:
    status_changed = _run("tutorial-handler")["status_changed"]
    changes = ChangeFactory(_yaml("tutorial-cdc-yaml"))
    order = {"id": 4, "customer": "ada", "status": "new", "total": "42.00"}
    run = run_handler(status_changed, changes.update("orders", order, status="paid"))
    assert run.outcome is Outcome.DONE, run.reason
    assert db.params()[0][1:] == (4, "new -> paid")
    created = changes.insert("orders", order)
    assert run_handler(status_changed, created).outcome is Outcome.SKIPPED


def _test_sample(
    name: str, handlers: str, watched: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A sample that is a test module: its handlers module importable, its cdc.yaml here."""
    _module(monkeypatch, "shop.handlers", _run(handlers))
    (tmp_path / "cdc.yaml").write_text(watched)
    monkeypatch.chdir(tmp_path)
    return _run(name)


@check("tutorial-test")
def _tutorial_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **_: Any) -> None:
    watched = SAMPLES["tutorial-cdc-yaml"].body
    tests = _test_sample("tutorial-test", "tutorial-handler", watched, tmp_path, monkeypatch)
    tests["test_only_status_changes_run_it"]()


@check("test-kit-unit")
def _test_kit_unit(
    db: FakeDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **_: Any
) -> None:
    watched = "tables: {public.users: {replica_identity: full}}\n"
    tests = _test_sample("test-kit-unit", "email-changed", watched, tmp_path, monkeypatch)
    tests["test_email_change_notifies"](Settings())
    assert db.params()[0][1:] == (1, "now b@x")


@check("every")
def _every(**_: Any) -> None:
    from cdc.routing import handlers_of

    found = _run("every")
    assert [h.event_type for h in handlers_of(found["nightly_report"])] == ["nightly-report"]
    assert [h.event_type for h in handlers_of(found["sync"])] == ["sync-due"]


@check("workloads")
def _workloads(**_: Any) -> None:
    from cdc.routing import handlers_of

    found = _run("workloads")
    assert [h.workload for h in handlers_of(found["to_warehouse"])] == ["sync"]
    assert [h.workload for h in handlers_of(found["send_receipt"])] == ["mail"]


@check("workloads-yaml")
def _workloads_yaml(**_: Any) -> None:
    lanes = _yaml("workloads-yaml").workloads
    assert lanes["mail"].rate is not None
    assert lanes["mail"].rate.interval_s == 0.02


@check("cdc-yaml")
def _cdc_yaml(**_: Any) -> None:
    assert _yaml("cdc-yaml").tables["public.users"].exclude_columns == ("password_hash",)


@check("add-orders")
def _add_orders(**_: Any) -> None:
    assert _yaml("add-orders").tables["public.orders"].snapshot_reads


@check("tutorial-cdc-yaml")
def _tutorial_cdc_yaml(**_: Any) -> None:
    assert _yaml("tutorial-cdc-yaml").connector.topic_prefix == "shop"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_sample_runs(
    name: str, db: FakeDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    CHECKS[name](db=db, tmp_path=tmp_path, monkeypatch=monkeypatch)

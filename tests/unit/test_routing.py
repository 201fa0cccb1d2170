"""The decorator, discovery, per-handler filters and the routing table, on corpus records and
on changes from the test kit's factory (itself checked against the corpus)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cdc import Change, ConfigError, Context, Kind, Op, Row, on_change
from cdc.events import Event
from cdc.routing import Router, discover, handlers_of
from cdc.tables.config import TableOptions, parse_watched_tables
from cdc.testing import ChangeFactory
from tests.corpus.load import decode, decoder, records

TABLE = "corpus.all_types"


def corpus_events() -> list[Event]:
    dec = decoder("json")
    return [decode(dec, r) for r in records("json")]


def noop(change: Change, ctx: Context) -> None:
    return None


def declare(table: str = TABLE, **options: Any) -> Any:
    (handler,) = handlers_of(on_change(table, **options)(lambda change, ctx: None))
    return handler


def test_declaration_defaults() -> None:
    h = declare("users")
    assert h.table == "public.users"
    assert h.ops == {Op.CREATE, Op.UPDATE, Op.DELETE}
    assert h.columns is None
    assert h.snapshot_reads is None


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"ops": "cx"}, "unknown operation 'x'"),
        ({"ops": "r"}, "snapshot_reads=True"),
        ({"ops": "m"}, "ops may only be c, u, d and t"),
        ({"ops": ""}, "ops is empty"),
        ({"columns": []}, "columns is empty"),
        ({"model": dict}, "model must be a pydantic model class"),
    ],
)
def test_bad_declarations_fail_at_import(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        declare(**options)


def test_bad_table_name_and_signature() -> None:
    with pytest.raises(ConfigError, match=r"schema\.table"):
        declare("Public.Users")

    def one_arg(change: Change) -> None: ...

    with pytest.raises(ConfigError, match="two positional arguments"):
        on_change("users")(one_arg)


def test_reads_before_is_found_in_the_code() -> None:
    def uses_before(change: Change, ctx: Context) -> None:
        if change.before and change.before["email"]:
            ctx.log.info("x")

    def uses_changed(c: Change, ctx: Context) -> None:
        c.changed_columns()

    def uses_row(change: Change, ctx: Context) -> None:
        assert change.row is not None

    assert handlers_of(on_change("users")(uses_before))[0].reads_before
    assert handlers_of(on_change("users")(uses_changed))[0].reads_before
    assert not handlers_of(on_change("users")(uses_row))[0].reads_before
    # A column filter on updates compares old and new rows. (Each decoration adds one.)
    assert handlers_of(on_change("users", columns=["email"])(uses_row))[-1].reads_before
    assert not handlers_of(on_change("users", reads_before=False)(uses_before))[-1].reads_before


def test_one_function_for_two_tables() -> None:
    @on_change("users")
    @on_change("posts", ops="c")
    def audit(change: Change, ctx: Context) -> None: ...

    assert [(h.table, h.ops) for h in handlers_of(audit)] == [
        ("public.posts", {Op.CREATE}),
        ("public.users", {Op.CREATE, Op.UPDATE, Op.DELETE}),
    ]


def test_discover_imports_a_package_and_its_submodules(tmp_path: Path) -> None:
    pkg = tmp_path / "discover_me"
    (pkg / "deep").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "deep" / "__init__.py").write_text("")
    body = """
        from cdc import on_change

        @on_change("{table}")
        def handle(change, ctx):
            pass
    """
    (pkg / "a.py").write_text(textwrap.dedent(body.format(table="users")))
    (pkg / "deep" / "b.py").write_text(
        textwrap.dedent(body.format(table="posts")) + "\nfrom discover_me.a import handle as h\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        found = discover(["discover_me"])
        assert sorted(h.name for h in found) == [
            "discover_me.a.handle",
            "discover_me.deep.b.handle",
        ]
        assert discover(["discover_me.a"]) == [h for h in found if h.table == "public.users"]
        with pytest.raises(ConfigError, match="cannot import"):
            discover(["discover_me.missing"])
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("discover_me")]:
            del sys.modules[name]


def test_router_on_the_corpus() -> None:
    """Default policy: changes and, when a handler takes them, truncates; snapshot reads only
    where a handler (or the table's option) asks."""
    events = corpus_events()
    plain = Router([declare()])
    takes_all = Router([declare(ops="cudt", snapshot_reads=True)])
    by_table_option = Router([declare()], {TABLE: TableOptions(snapshot_reads=True)})

    def routed(router: Router) -> list[str]:
        out = []
        for e in events:
            if router.gate.admit(e) and router.routes_for(e):
                out.append(e.op.value if isinstance(e, Change) else e.kind.value)
        return out

    assert routed(plain) == ["c", "u", "u", "u", "d"]
    assert routed(takes_all) == ["r", "r", "r", "r", "c", "u", "u", "u", "d", "t"]
    assert routed(by_table_option) == ["r", "r", "r", "r", "c", "u", "u", "u", "d"]
    assert plain.gate.held_back[Kind.SNAPSHOT_READ, TABLE] == 4
    assert plain.gate.held_back[Kind.TRUNCATE, TABLE] == 1
    assert plain.gate.held_back[Kind.HEARTBEAT, ""] == 3
    # A handler opting out overrides the table's option.
    assert (
        routed(Router([declare(snapshot_reads=False)], {TABLE: TableOptions(snapshot_reads=True)}))[
            0
        ]
        == "c"
    )
    other = Router([declare("public.other")])
    change = next(e for e in events if isinstance(e, Change) and e.op is Op.CREATE)
    assert other.routes_for(change) is None  # no handler for this table at all


WATCHED = parse_watched_tables(
    """
    tables:
      public.users: {replica_identity: full, exclude_columns: [password_hash]}
      public.comments: {}
    """
)


def test_column_filter() -> None:
    factory = ChangeFactory(WATCHED)
    route = Router([declare("users", columns=["email"])]).routes["public.users"][0]
    row = {"id": 1, "handle": "ada", "email": "a@x", "password_hash": "secret"}
    assert route.wants(factory.update("users", row, email="b@x"))
    assert not route.wants(factory.update("users", row, handle="lovelace"))
    # A change to an excluded column never reaches Debezium's record.
    assert not route.wants(factory.update("users", row, password_hash="other"))
    assert route.wants(factory.insert("users", row))
    # DEFAULT identity: no old row, so nothing says what changed; run rather than miss it.
    comments = Router([declare("comments", columns=["body"])]).routes["public.comments"][0]
    assert comments.wants(factory.update("comments", {"id": 1, "body": "x"}, body="y"))


def test_routes_found_once_per_op_unless_a_handler_watches_columns() -> None:
    factory = ChangeFactory(WATCHED)
    every, email = declare("users"), declare("users", columns=["email"])
    router = Router([every, email])
    row = {"id": 1, "handle": "ada", "email": "a@x", "password_hash": "secret"}
    for _ in range(2):  # the second time from what the first found
        assert [r.handler for r in router.routes_for(factory.insert("users", row)) or ()] == [
            every,
            email,
        ]
        emailed = router.routes_for(factory.update("users", row, email="b@x")) or ()
        assert [r.handler for r in emailed] == [every, email]
        handled = router.routes_for(factory.update("users", row, handle="lovelace")) or ()
        assert [r.handler for r in handled] == [every]


class User(Row):
    id: int
    email: str


def test_row_model_types_before_and_after() -> None:
    factory = ChangeFactory(WATCHED)
    handler = declare("users", model=User)
    change = handler.typed(
        factory.update("users", {"id": 1, "email": "a@x", "handle": "h"}, email="b@x")
    )
    assert isinstance(change, Change)
    assert change.before == User(id=1, email="a@x")
    assert change.after == User(id=1, email="b@x")
    assert change.changed_columns() == {"email"}
    assert change.idempotency_key.startswith("app/public.users/")
    with pytest.raises(ValidationError, match="email"):
        handler.typed(factory.insert("users", {"id": 2, "handle": "no email"}))

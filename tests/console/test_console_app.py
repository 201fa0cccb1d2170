"""The console without a stack (Starlette's TestClient): every page needs the token, every
POST a CSRF token bound to the session and our own origin, a pause from the page is the
same order `cdc pause` gives, sensitive columns are masked, and on loopback a foreign Host
is refused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from cdc.console import Sources, create_app
from cdc.console.auth import Auth
from cdc.masking import Masking
from cdc.routing.declared import TableHandler
from cdc.runtime.control import Order
from cdc.settings import MASK, Settings
from cdc.tables.config import parse_watched_tables

TOKEN = "s3cret-console-token"
ORIGIN = "http://127.0.0.1"
FILE = """
connector: {topic_prefix: app}
tables:
  public.users: {sensitive_columns: [email, ssn]}
  public.posts: {}
"""


def _handler(name: str, table: str) -> TableHandler:
    return TableHandler(
        func=lambda change, ctx: None,
        table=table,
        ops=frozenset(),
        columns=None,
        snapshot_reads=None,
        model=None,
        reads_before=False,
        name=name,
    )


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Order | None]]:
    return []


@pytest.fixture
def sources(monkeypatch: pytest.MonkeyPatch, sent: list[tuple[str, str, Order | None]]) -> Sources:
    watched = parse_watched_tables(FILE)
    found: list[Any] = [
        _handler("app.mirror", "public.users"),
        _handler("app.audit", "public.posts"),
    ]
    s = Sources(Settings(), watched, found)  # not started: nothing is read from Kafka

    def send_order(_settings: Settings, topic: str, key: str, value: bytes | None) -> None:
        order = Order.parse(value) if value is not None else None
        sent.append((topic, key, order))
        for controls in s.controls.values():  # as every consumer's tail folds it
            controls.fold(key, value)

    monkeypatch.setattr("cdc.console.actions.send_order", send_order)
    return s


@pytest.fixture
def client(sources: Sources) -> Iterator[TestClient]:
    with TestClient(create_app(sources, TOKEN), base_url=ORIGIN) as c:
        yield c


def _login(client: TestClient) -> str:
    response = client.post("/login", data={"token": TOKEN}, headers={"Origin": ORIGIN})
    assert response.status_code == 200, response.text  # followed to the overview
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', response.text)
    assert match is not None
    return match.group(1)


def test_every_page_needs_the_token(client: TestClient) -> None:
    for path in ("/", "/connector", "/dead-letters", "/controls", "/dead-letters/default/0/1"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/login?next={path}"
    assert client.get("/?part=workloads", headers={"HX-Request": "true"}).status_code == 401
    assert client.get("/static/htmx.min.js").status_code == 200
    refused = client.post("/login", data={"token": "wrong"}, headers={"Origin": ORIGIN})
    assert refused.status_code == 401
    assert "not the console" in refused.text
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_session_or_a_bearer_token_opens_the_pages(client: TestClient) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    overview = client.get("/", headers=bearer)
    assert overview.status_code == 200
    assert "app.mirror" in overview.text
    assert "app.audit" in overview.text
    assert overview.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in overview.headers["Content-Security-Policy"]
    nope = client.get("/", headers={"Authorization": "Bearer nope"}, follow_redirects=False)
    assert nope.status_code == 303
    _login(client)
    assert client.get("/controls").status_code == 200
    cookie = client.cookies.get("cdc_console")
    assert cookie is not None
    assert TOKEN not in cookie


def test_a_pause_needs_the_sessions_csrf_token_and_our_origin(
    client: TestClient, sources: Sources, sent: list[tuple[str, str, Order | None]]
) -> None:
    csrf = _login(client)
    form = {"workload": "default", "handler": "app.mirror", "reason": "a bad deploy"}
    for headers, data in (
        ({"Origin": ORIGIN}, form),  # no CSRF token
        ({"Origin": ORIGIN}, {**form, "csrf": "0" * 64}),  # a forged one
        ({"Origin": "http://evil.example"}, {**form, "csrf": csrf}),  # another site's page
        ({}, {**form, "csrf": csrf}),  # neither Origin nor Referer
    ):
        response = client.post("/controls/pause", data=data, headers=headers)
        assert response.status_code == 403, (headers, response.text)
    assert sent == []
    paused = client.post("/controls/pause", data={**form, "csrf": csrf}, headers={"Origin": ORIGIN})
    assert paused.status_code == 200
    assert "paused app.mirror" in paused.text  # the flash, on the page it went back to
    ((topic, key, order),) = sent
    assert (topic, key) == ("app.control", "pause/default/app.mirror")
    assert order is not None
    assert order.reason == "a bad deploy"
    assert "console" in order.by
    assert sources.controls["default"].is_paused("app.mirror")
    row = re.search(r'<tr data-handler="app.mirror">.*?</tr>', paused.text, re.S)
    assert row is not None
    assert "paused" in row.group(0)
    assert "Resume" in row.group(0)
    # Another session's CSRF token is not this one's.
    assert Auth(TOKEN).csrf("another-session") != csrf
    resumed = client.post(
        "/controls/resume",
        data={"workload": "default", "handler": "app.mirror", "csrf": csrf},
        headers={"Referer": f"{ORIGIN}/controls"},
    )
    assert resumed.status_code == 200
    assert sent[-1][1:] == ("pause/default/app.mirror", None)
    assert not sources.controls["default"].is_paused("app.mirror")


def test_a_bearer_token_posts_without_a_csrf_token(
    client: TestClient, sent: list[tuple[str, str, Order | None]]
) -> None:
    response = client.post(
        "/controls/skip",
        data={
            "workload": "default",
            "topic": "app.public.users",
            "partition": "0",
            "offset": "7",
            "reason": "a test row",
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert sent[-1][1] == "skip/default/app.public.users/0/7/*"


def test_an_unknown_handler_or_workload_is_refused(
    client: TestClient, sent: list[tuple[str, str, Order | None]]
) -> None:
    csrf = _login(client)
    for form in ({"workload": "default", "handler": "app.nope"}, {"workload": "nope"}):
        response = client.post(
            "/controls/pause", data={**form, "csrf": csrf}, headers={"Origin": ORIGIN}
        )
        assert "refused" in response.text
    assert sent == []


def test_on_loopback_a_foreign_host_is_refused(sources: Sources) -> None:
    with TestClient(create_app(sources, TOKEN), base_url="http://attacker.example") as c:
        response = c.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400
    with TestClient(create_app(sources, TOKEN, "0.0.0.0"), base_url="http://cdc.internal") as c:  # noqa: S104
        assert c.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_sessions_expire_and_are_signed_with_the_token() -> None:
    auth = Auth(TOKEN, session_s=60)
    cookie = auth.new_session(now=1000)
    assert auth.session(cookie, now=1030) is not None
    assert auth.session(cookie, now=1061) is None
    assert Auth("another token").session(cookie, now=1030) is None
    sid, issued, mac = cookie.split(".")
    assert auth.session(f"{sid}.{int(issued) + 1}.{mac}", now=1030) is None
    assert auth.session("garbage", now=1030) is None


def test_sensitive_columns_are_masked_in_a_record_and_its_reason() -> None:
    masking = Masking(parse_watched_tables(FILE))
    value = {
        "schema": {"type": "struct"},
        "payload": {
            "before": None,
            "after": {"id": 7, "email": "ada@example.org", "ssn": "123-45-6789", "name": "Ada"},
            "op": "c",
        },
    }
    shown = masking.bytes_("public.users", json.dumps(value).encode())
    assert "ada@example.org" not in shown.text
    assert "123-45-6789" not in shown.text
    assert MASK in shown.text
    assert '"Ada"' in shown.text
    reason = "refused ada@example.org for row 7"
    assert Masking.text(reason, shown.hidden) == f"refused {MASK} for row 7"
    # Another table's columns of the same name are not sensitive.
    assert "ada@example.org" in masking.bytes_("public.posts", json.dumps(value).encode()).text
    # What is not JSON cannot be masked: not shown for a table with sensitive columns.
    assert "not shown" in masking.bytes_("public.users", b"\x00\x01avro").text
    assert masking.row("public.users", {"email": "x@y.z", "id": 1}) == {"email": MASK, "id": 1}


def test_a_rewind_from_the_page_is_the_order_cdc_rewind_gives(
    client: TestClient, sent: list[tuple[str, str, Order | None]]
) -> None:
    form = {"workload": "default", "handler": "app.mirror", "to": "2026-12-07T05:00:00Z"}
    refused = client.post(
        "/controls/rewind",
        data=form | {"reason": ""},
        headers={"Authorization": f"Bearer {TOKEN}"},
        follow_redirects=False,
    )
    assert sent == []
    response = client.post(
        "/controls/rewind",
        data=form | {"reason": "the mirror's bug is fixed"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        follow_redirects=False,
    )
    assert response.status_code == 303, refused.text
    ((_, key, order),) = sent
    assert key == "rewind/default/app.mirror"
    assert order is not None
    assert order.reason == "the mirror's bug is fixed"

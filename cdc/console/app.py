"""The console's pages: server-rendered (Jinja2), with htmx for the overview's refresh and
the dead-letter search, and plain forms for every action (POST, then a redirect)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from cdc.console.actions import Actions
from cdc.console.auth import COOKIE, CSRF_FIELD, LOOPBACK, Auth, Guard, checked_form
from cdc.console.sources import Sources
from cdc.errors import CdcError
from cdc.lag import behind
from cdc.runtime.dead_letter import Parked
from cdc.slot_health import size

log = structlog.get_logger("cdc.console")
HERE = Path(__file__).parent
SHOWN = 200  # dead letters listed at most (the latest matching)
PAGES = (("/", "Overview"), ("/connector", "Connector"), ("/dead-letters", "Dead letters"),
         ("/controls", "Controls"))  # fmt: skip


def create_app(sources: Sources, token: str, host: str = "127.0.0.1") -> Starlette:
    """The console for ``sources`` (started and stopped by the caller), its pages open to
    whoever has ``token``; served on ``host`` (on loopback, only for loopback names)."""
    auth = Auth(token)
    actions = Actions(sources)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cdc.console", "templates"), autoescape=True
    )
    templates = Jinja2Templates(env=env)
    templates.env.filters["age"] = lambda ms: behind(ms, time.time() * 1000)
    templates.env.filters["bytes"] = lambda n: "-" if n is None else size(n)
    flashes: dict[str, list[str]] = {}

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        sid: str | None = getattr(request.state, "session", None)
        said = flashes.pop(sid or "", [])
        response: Response = templates.TemplateResponse(
            request,
            name,
            {
                "csrf": auth.csrf(sid) if sid else "",
                "csrf_field": CSRF_FIELD,
                "pages": PAGES,
                "path": request.url.path,
                "flash": said,
                "prefix": sources.watched.connector.topic_prefix,
                **context,
            },
            status_code=status,
        )
        return response

    def done(request: Request, message: str, to: str) -> Response:
        flashes.setdefault(getattr(request.state, "session", None) or "", []).append(message)
        return RedirectResponse(to, 303)

    def action(
        run: Callable[[Request, FormData], Awaitable[tuple[str, str]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST: its CSRF token checked, then ``run`` (message, where to go next)."""

        async def endpoint(request: Request) -> Response:
            form = await checked_form(request, auth)
            if form is None:
                return PlainTextResponse("the form is stale or forged: reload the page", 403)
            try:
                message, to = await run(request, form)
            except CdcError as exc:
                message, to = f"refused: {exc}", request.headers.get("referer", "/")
            return done(request, message, to if to.startswith("/") else "/")

        return endpoint

    async def login_form(request: Request) -> Response:
        return page(request, "login.html", next=_local(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        form = await request.form()
        given = form.get("token")
        if not isinstance(given, str) or not auth.token_ok(given):
            log.warning("console.login_refused", client=_client(request))
            return page(request, "login.html", 401, next=_local(form.get("next")), refused=True)
        log.info("console.login", client=_client(request))
        response = RedirectResponse(_local(form.get("next")), 303)
        response.set_cookie(
            COOKIE,
            auth.new_session(),
            max_age=int(auth.session_s),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        if await checked_form(request, auth) is None:
            return PlainTextResponse("the form is stale or forged: reload the page", 403)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE)
        return response

    async def overview(request: Request) -> Response:
        part = request.query_params.get("part") == "workloads"
        name = "_workloads.html" if part else "overview.html"
        return page(
            request,
            name,
            workloads=sources.workload_views(),
            handlers=sources.handler_views(),
        )

    async def connector(request: Request) -> Response:
        return page(request, "connector.html", c=await run_in_threadpool(sources.connector))

    async def dead_letters(request: Request) -> Response:
        workload = _workload(request, sources)
        query = request.query_params.get("q", "").strip()
        dlq = await run_in_threadpool(sources.dead_letters, workload)
        rows = []
        for parked in reversed(dlq.records):
            key, reason = sources.summary(parked)
            if not query or _matches(query, parked, key, reason):
                rows.append((parked, key, reason, dlq.replayed(parked)))
        context: dict[str, Any] = {
            "workload": workload,
            "workloads": sources.workloads,
            "q": query,
            "topic": dlq.topic,
            "total": len(dlq.records),
            "rows": rows[:SHOWN],
            "matched": len(rows),
            "held": sources.held(dlq),
        }
        if "hx-request" in request.headers:
            return page(request, "_dead_letters.html", **context)
        return page(request, "dead_letters.html", **context)

    async def record(request: Request) -> Response:
        workload = request.path_params["workload"]
        at = (request.path_params["partition"], request.path_params["offset"])
        dlq = await run_in_threadpool(sources.dead_letters, workload)
        parked = next((p for p in dlq.records if (p.partition, p.offset) == at), None)
        if parked is None:
            return PlainTextResponse(f"no dead letter at {at[0]}@{at[1]} in {dlq.topic}", 404)
        view = sources.record(dlq, parked)
        return page(request, "record.html", r=view, workload=workload, topic=dlq.topic)

    async def controls(request: Request) -> Response:
        return page(
            request,
            "controls.html",
            workloads=sources.workload_views(),
            handlers=sources.handler_views(),
            skips=sources.skips(),
        )

    async def pause(request: Request, form: FormData) -> tuple[str, str]:
        workload, handler = _field(form, "workload"), _field(form, "handler") or None
        said = await run_in_threadpool(
            actions.pause, workload, handler, _field(form, "reason"), _client(request)
        )
        return said, _local(form.get("next"))

    async def resume(request: Request, form: FormData) -> tuple[str, str]:
        workload, handler = _field(form, "workload"), _field(form, "handler") or None
        said = await run_in_threadpool(actions.resume, workload, handler, _client(request))
        return said, _local(form.get("next"))

    async def skip(request: Request, form: FormData) -> tuple[str, str]:
        try:
            where = (_field(form, "topic"), int(_field(form, "partition")),
                     int(_field(form, "offset")))  # fmt: skip
        except ValueError:
            return "refused: the partition and the offset are numbers", "/controls"
        said = await run_in_threadpool(
            actions.skip,
            _field(form, "workload"),
            where,
            _field(form, "handler") or None,
            _field(form, "reason"),
            _client(request),
        )
        return said, _local(form.get("next"))

    async def rewind(request: Request, form: FormData) -> tuple[str, str]:
        said = await run_in_threadpool(
            actions.rewind,
            _field(form, "workload"),
            _field(form, "handler") or None,
            _field(form, "to"),
            _field(form, "reason"),
            _client(request),
        )
        return said, _local(form.get("next"))

    async def replay(request: Request, form: FormData) -> tuple[str, str]:
        workload = _field(form, "workload")
        said = await run_in_threadpool(actions.replay, workload, _client(request))
        return said, _local(form.get("next"))

    routes = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview),
        Route("/connector", connector),
        Route("/dead-letters", dead_letters),
        Route("/dead-letters/{workload}/{partition:int}/{offset:int}", record),
        Route("/dead-letters/replay", action(replay), methods=["POST"]),
        Route("/controls", controls),
        Route("/controls/pause", action(pause), methods=["POST"]),
        Route("/controls/resume", action(resume), methods=["POST"]),
        Route("/controls/skip", action(skip), methods=["POST"]),
        Route("/controls/rewind", action(rewind), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    guard = Middleware(Guard, auth=auth, loopback_only=host in LOOPBACK)
    return Starlette(routes=routes, middleware=[guard])


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _local(path: object) -> str:
    """Where to go next: a path of ours only (never another site)."""
    if isinstance(path, str) and path.startswith("/") and not path.startswith(("//", "/\\")):
        return path
    return "/"


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _workload(request: Request, sources: Sources) -> str:
    name = request.query_params.get("workload", "")
    return name if name in sources.workloads else sources.workloads[0]


def _matches(query: str, parked: Parked, key: str, reason: str) -> bool:
    """A search: every word in one of the record's fields (the masked ones as shown)."""
    fields = (parked.topic, parked.table, parked.handler, parked.error, key, reason,
              f"{parked.partition}@{parked.offset}", str(parked.source_offset))  # fmt: skip
    text = " ".join(fields).lower()
    return all(word in text for word in query.lower().split())

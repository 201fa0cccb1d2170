"""The Connect client names several workers: a request goes on to the next while one cannot
be reached, and stays with the one that answered."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from cdc.connect import ConnectClient
from cdc.errors import ConnectError


@pytest.fixture
def worker() -> Iterator[tuple[str, list[str]]]:
    """A stand-in worker's REST port answering every GET with a connector status."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            found = self.path == "/connectors/app/status"
            body = json.dumps({"name": "app", "connector": {"state": "RUNNING"}}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def dead_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: refused


def test_a_request_goes_on_to_a_worker_that_answers(worker: tuple[str, list[str]]) -> None:
    url, seen = worker
    client = ConnectClient(f"{dead_port()}, {url}/", timeout=5)
    assert client.status("app")["connector"]["state"] == "RUNNING"
    assert client.urls[client._at] == url  # the next request goes there first
    assert client.status("app")["name"] == "app"
    assert seen == ["/connectors/app/status"] * 2
    # An answer that is an error is the group's answer: not retried elsewhere.
    with pytest.raises(ConnectError):
        client.status("other")
    client.close()


def test_no_worker_reachable_raises_the_transport_error() -> None:
    client = ConnectClient(f"{dead_port()},{dead_port()}", timeout=5)
    with pytest.raises(httpx.ConnectError):
        client.status("app")

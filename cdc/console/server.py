"""The console served with uvicorn: in the foreground (`cdc console`) or on a thread beside
the consumer (`cdc run --console`)."""

from __future__ import annotations

import threading

import structlog
import uvicorn

from cdc.console.app import create_app
from cdc.console.sources import Sources
from cdc.errors import ConfigError
from cdc.routing import Handler
from cdc.settings import Settings
from cdc.tables.config import WatchedTables

log = structlog.get_logger("cdc.console")


class ConsoleServer:
    """The console on ``settings.console_host`` and ``console_port``; it will not start
    without ``console_token``."""

    def __init__(self, settings: Settings, watched: WatchedTables, found: list[Handler]) -> None:
        token = settings.console_token
        if token is None or not token.get_secret_value().strip():
            raise ConfigError(
                "console",
                [
                    "no token: set CDC_CONSOLE_TOKEN, or write it to the file "
                    "cdc_console_token in CDC_SECRETS_DIR"
                ],
            )
        self.host, self.port = settings.console_host, settings.console_port
        self.sources = Sources(settings, watched, found)
        app = create_app(self.sources, token.get_secret_value().strip(), self.host)
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            log_config=None,  # our logging, configured by the cdc command
            access_log=False,
            lifespan="off",
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve until stopped (SIGINT or SIGTERM in the foreground)."""
        self.sources.start()
        log.info("console.serving", url=f"http://{self.host}:{self.port}/")
        try:
            self._server.run()
        finally:
            self.sources.stop()

    def start(self) -> ConsoleServer:
        """Serve on a thread of its own (the main thread's signals stay the consumer's)."""
        self._thread = threading.Thread(target=self.run, name="cdc-console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

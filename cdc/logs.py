"""Structured logs: readable lines on a terminal (colour where it has it), JSON lines
elsewhere; librdkafka's own log lines come through the same logger."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "console", "json"]


_READABLE = [False]  # whether the lines are for a person on a terminal (`readable`)


def readable() -> bool:
    """Whether the log is rendered for a person (console lines), not collected (JSON)."""
    return _READABLE[0]


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto") -> None:
    """``fmt``: ``console`` (aligned, coloured key=value lines), ``json`` (one object a
    line), or ``auto``: console on a terminal, JSON when piped or collected."""
    json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    _READABLE[0] = not json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:  # the console renderer lays out tracebacks itself
        processors.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Configured once, at start: every logger can keep what it built.
        cache_logger_on_first_use=True,
    )


class _ToStructlog(logging.Handler):
    """librdkafka's lines (confluent-kafka calls ``logger.log(level, "%s [%s] %s",
    facility, client, message)``) as ``kafka.log`` events at their level."""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3:
            facility, client, message = (str(a) for a in args)
        else:
            facility, client, message = "", "", record.getMessage()
        _kafka.log(record.levelno, "kafka.log", facility=facility, client=client, message=message)


_kafka = structlog.get_logger("cdc.kafka")
# Given to every client as its `logger`: without one, librdkafka writes `%4|...` to stderr.
KAFKA_LOGGER = logging.getLogger("cdc.kafka")
KAFKA_LOGGER.addHandler(_ToStructlog())
KAFKA_LOGGER.setLevel(logging.DEBUG)  # structlog's level decides
KAFKA_LOGGER.propagate = False

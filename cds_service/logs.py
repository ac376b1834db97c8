"""Logging: every line on stderr is one JSON object (python-json-logger), from our loggers, werkzeug and
gunicorn alike; the audit logger writes one line per request. Never tokens or PHI."""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter


def formatter() -> logging.Formatter:
    """{"time", "level", "logger", "message", ...extra fields} on one line."""
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        timestamp="time",
        rename_fields={"levelname": "level", "name": "logger"},
    )


# gunicorn's `logconfig_dict`: its own error log through the same JSON formatter (access lines are our
# audit lines: gunicorn's access log stays off)
GUNICORN_LOGCONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "cds_service.logs.formatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
    },
}


def configure(level: str = "INFO") -> None:
    """One JSON handler on the root logger (replacing any other), our loggers at `level`."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("her2_cds").setLevel(level)


def audit_logger() -> logging.Logger:
    return logging.getLogger("her2_cds.audit")


def audit(logger: logging.Logger, record: dict[str, Any]) -> None:
    """The request's line: its fields at the top level of the JSON object."""
    logger.info("request", extra=record)

"""Logging set-up: one JSON line per request on the audit logger, never tokens or PHI."""

from __future__ import annotations

import logging
import sys


def configure(level: str = "INFO") -> None:
    root = logging.getLogger("her2_cds")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


def audit_logger() -> logging.Logger:
    return logging.getLogger("her2_cds.audit")

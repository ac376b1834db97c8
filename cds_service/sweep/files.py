"""The sweep's files hold patient data: each is created readable by its owner only, and written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO


def private_text(path: Path) -> TextIO:
    """A text file for writing, readable by its owner only."""
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8", newline="")


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (written beside it, then renamed), readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
    os.replace(tmp, path)

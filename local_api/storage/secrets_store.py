"""Generated secrets that persist in the data directory (0600), never in code."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def load_or_create(path: Path, *, nbytes: int = 48) -> str:
    """The secret in ``path``; created with 0600 permissions on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if len(value) < 32:
            raise RuntimeError(f"secret file {path} is empty or truncated; remove it") from None
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return value
    value = secrets.token_urlsafe(nbytes)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value

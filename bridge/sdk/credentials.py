"""The logins `bridge login` stores: one API key per service URL, in a file only you can read.

``{"default_url": URL, "servers": {URL: {"api_key", "key_id", "username"}}}`` in
``credentials.json`` under the user's config directory (platformdirs; ``$XDG_CONFIG_HOME``
on Linux). The CLI writes it; the SDK, the widgets and the CLI read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def credentials_path() -> Path:
    """Where the stored logins live."""
    import platformdirs

    config_dir = platformdirs.user_config_dir("compute-bridge", appauthor=False)
    return Path(config_dir) / "credentials.json"


def read_credentials() -> dict[str, Any]:
    """The stored logins; ``{"servers": {}}`` when there are none.

    Raises OSError or ValueError when the file exists but cannot be read as JSON.
    """
    try:
        data = json.loads(credentials_path().read_text())
    except FileNotFoundError:
        return {"servers": {}}
    if not isinstance(data, dict):
        return {"servers": {}}
    data.setdefault("servers", {})
    return data


def stored_login(url: str | None) -> tuple[str | None, str | None]:
    """``(service URL, API key)`` from the stored logins: the key stored for ``url``, or, with
    no ``url``, the service of the last `bridge login` and its key. An unreadable file counts
    as no login (the CLI reports it; a notebook should not fail on it)."""
    try:
        data = read_credentials()
    except (OSError, ValueError):
        return url, None
    url = url or data.get("default_url")
    if not url:
        return None, None
    entry = data["servers"].get(url) or {}
    return url, entry.get("api_key")

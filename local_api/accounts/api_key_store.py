"""API keys: `cb_<prefix>_<secret>`, shown once, stored as a SHA-256 of the whole key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import select

from bridge.errors import Unauthorized
from local_api.storage import schema
from local_api.storage.db import engine
from local_api.timeutil import utcnow

PREFIX = "cb_"


def _hash(key: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(key.encode()).hexdigest()


def create(user_id: int, name: str) -> tuple[dict[str, Any], str]:
    """A new key row and the secret, which is never stored nor shown again."""
    prefix = secrets.token_hex(4)
    key = f"{PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = {
        "id": secrets.token_hex(8),
        "user_id": user_id,
        "name": name,
        "prefix": prefix,
        "secret_hash": _hash(key),
        "created_at": utcnow(),
    }
    with engine().begin() as conn:
        conn.execute(schema.api_keys.insert().values(**row))
    return row, key


def lookup(key: str) -> dict[str, Any]:
    """The live key row for a presented key, or Unauthorized."""
    parts = key[len(PREFIX) :].split("_", 1)
    if len(parts) != 2 or not parts[0]:
        raise Unauthorized("Invalid API key")
    table = schema.api_keys
    with engine().begin() as conn:
        row = conn.execute(select(table).where(table.c.prefix == parts[0])).mappings().first()
        if row is None or not hmac.compare_digest(row["secret_hash"], _hash(key)):
            raise Unauthorized("Invalid API key")
        if row["revoked_at"] is not None:
            raise Unauthorized("This API key has been revoked")
        now = utcnow()
        last = row["last_used_at"]
        # One write a minute at most: a key used in a tight loop must not serialize on SQLite.
        if last is None or (now - last.replace(tzinfo=now.tzinfo)).total_seconds() > 60:
            conn.execute(table.update().where(table.c.id == row["id"]).values(last_used_at=now))
    return dict(row)


def is_live(key_id: str) -> bool:
    """Whether the key still exists and is not revoked (open sockets re-check it)."""
    table = schema.api_keys
    with engine().connect() as conn:
        row = conn.execute(select(table.c.revoked_at).where(table.c.id == key_id)).first()
    return row is not None and row[0] is None

"""Redis (BRIDGE_REDIS_URL): what API instances must share beyond the database.

Rate limits and the answer cache reach it through Flask-Limiter's and Flask-Caching's own
storage URIs (``Settings.ratelimit_storage`` / ``cache_storage``); this module holds the
client for the rest: signing nonces (seen once across instances) and the ``/ws`` pub/sub.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

NONCE_PREFIX = "bridge:nonce:"


def create_client(url: str) -> Any:
    """A redis-py client (thread-safe, pooled) for ``url``."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, health_check_interval=30)


def client() -> Any | None:
    """The current app's Redis client, or None when BRIDGE_REDIS_URL is not set."""
    return current_app.extensions.get("redis")


def first_use(key_id: str, nonce: str, ttl: int) -> bool:
    """Record a signing nonce for ``ttl`` seconds; False when any instance saw it already."""
    shared = client()
    if shared is None:
        return True
    return bool(shared.set(f"{NONCE_PREFIX}{key_id}:{nonce}", b"1", nx=True, ex=ttl))


def init_app(app: Flask) -> None:
    url = app.config["SETTINGS"].redis_url
    if url:
        app.extensions["redis"] = create_client(url)


def close(app: Flask) -> None:
    shared = app.extensions.pop("redis", None)
    if shared is not None:
        shared.close()

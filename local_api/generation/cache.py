"""Cache of deterministic answers (temperature 0 or a seed), with Flask-Caching storage by URI."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from typing import Any

from flask import Flask, current_app, has_request_context, request
from flask_caching import Cache

from bridge.config import Settings
from bridge.types import GenerateRequest


def _cache_config(uri: str) -> dict[str, Any]:
    scheme, _, rest = uri.partition("://")
    if scheme == "simple":
        return {"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 2000}
    if scheme == "null":
        return {"CACHE_TYPE": "NullCache"}
    if scheme in ("redis", "rediss"):
        return {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": uri}
    if scheme == "filesystem":
        return {"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": rest or "/tmp/compute-bridge-cache"}
    from bridge.errors import ValidationError

    raise ValidationError(f"Unsupported cache storage URI {uri!r} (simple://, redis://, ...)")


def key_for(user_id: int, request_: GenerateRequest) -> str:
    """Per-user key over everything that shapes the answer."""
    material = json.dumps([user_id, asdict(request_)], sort_keys=True, default=str)
    return "answer:" + hashlib.sha256(material.encode()).hexdigest()


def wanted(request_: GenerateRequest) -> bool:
    """Deterministic and not refused by the HTTP request's Cache-Control (a /ws frame,
    outside any HTTP request, has none)."""
    cache_control = request.headers.get("Cache-Control", "") if has_request_context() else ""
    directives = cache_control.lower()
    return (request_.deterministic and request_.logprobs is None  # stored: text only
            and "no-cache" not in directives and "no-store" not in directives)


def get(key: str) -> tuple[dict[str, Any], int] | None:
    """(stored answer, seconds it has left) or None."""
    entry = _cache().get(key)
    if entry is None:
        return None
    left = int(entry["expires"] - time.time())
    return (entry["answer"], left) if left > 0 else None


def put(key: str, answer: dict[str, Any]) -> int:
    ttl = int(current_app.config["SETTINGS"].cache_ttl)
    _cache().set(key, {"answer": answer, "expires": time.time() + ttl}, timeout=ttl)
    return ttl


def _cache() -> Cache:
    return current_app.extensions["answer_cache"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]
    cache = Cache(config=_cache_config(settings.cache_storage))
    cache.init_app(app)
    app.extensions["answer_cache"] = cache

"""Rate limits per tier with Flask-Limiter: keyed by user (JWT or API key) or by address."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RequestLimit
from limits import parse_many

from bridge.config import Settings
from bridge.errors import RateLimitExceeded
from local_api.accounts.identity import Identity, quiet_identity
from local_api.errors import error_response
from local_api.system.metrics import count_rate_limited
from local_api.timeutil import duration

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class TierLimits:
    """Which limit string applies to whom."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def limit_for(self, who: Identity | None) -> str:
        if who is None:
            return self.settings.anonymous_limit
        if who.rate_limit:
            return who.rate_limit
        tiers = self.settings.tier_limits
        return tiers.get(who.tier, tiers["free"])

    def describe(self, who: Identity | None) -> dict[str, Any]:
        return {"tier": who.tier if who else "anonymous", "limits": self.limit_for(who)}


def _key() -> str:
    who = quiet_identity()
    return f"user:{who.user_id}" if who else f"addr:{request.remote_addr}"


def _breached(limit: RequestLimit) -> Response:
    who = quiet_identity()
    count_rate_limited(who.tier if who else "anonymous")
    reset_in = max(1, int(limit.reset_at - time.time()))
    return error_response(
        RateLimitExceeded(
            details={
                "limit": limit.limit.amount,
                "window": str(limit.limit),
                "reset_in": duration(reset_in),
                "retry_after": reset_in,
            },
            headers={"Retry-After": str(reset_in)},
        )
    )


def charge(who: Identity) -> None:
    """Count one generation that no HTTP request carries (a ``/ws`` chat.stream) against the
    caller's limits, in the same moving windows as their HTTP requests; RateLimitExceeded
    (``details.retry_after`` in seconds) when one is spent."""
    limiter: Limiter = current_app.extensions["bridge_limiter"]
    if not limiter.enabled:
        return
    tiers: TierLimits = current_app.extensions["bridge_limits"]
    # Flask-Limiter's own key for an application limit: prefix, key_func(), the shared scope.
    args = ("bridge", f"user:{who.user_id}", "global")
    for item in parse_many(tiers.limit_for(who)):
        if not limiter.limiter.hit(item, *args):
            count_rate_limited(who.tier)
            reset_in = max(1, int(limiter.limiter.get_window_stats(item, *args).reset_time
                                  - time.time()))
            raise RateLimitExceeded(details={
                "limit": item.amount, "window": str(item), "reset_in": duration(reset_in),
                "retry_after": reset_in})


def go_duration(seconds: float) -> str:
    """OpenAI's reset format (Go's time.Duration): ``20ms``, ``1s``, ``6m0s``, ``1h0m0s``."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def openai_headers(response: Response) -> Response:
    """The /v1 dialect's rate-limit headers, as OpenAI's API sends them.

    ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests`` and
    ``x-ratelimit-reset-requests`` (platform.openai.com/docs/guides/rate-limits, "Rate limits in
    headers"), and ``retry-after-ms``, which the openai Python client reads before
    ``retry-after`` (openai/_base_client.py, ``_parse_retry_after_header``). There are no token
    limits here, so no ``-tokens`` headers.
    """
    if not request.path.startswith("/v1/"):
        return response
    limit = response.headers.get("X-RateLimit-Limit")
    if limit is not None:
        response.headers["x-ratelimit-limit-requests"] = limit
        response.headers["x-ratelimit-remaining-requests"] = response.headers.get(
            "X-RateLimit-Remaining", "0")
        reset = response.headers.get("X-RateLimit-Reset", "")
        if reset.isdigit():
            response.headers["x-ratelimit-reset-requests"] = go_duration(
                max(0.0, int(reset) - time.time()))
    retry_after = response.headers.get("Retry-After", "")
    if retry_after.isdigit():
        response.headers["retry-after-ms"] = str(int(retry_after) * 1000)
    return response


def init_app(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]
    tiers = TierLimits(settings)
    limiter = Limiter(
        key_func=_key,
        application_limits=[lambda: tiers.limit_for(quiet_identity())],
        application_limits_exempt_when=lambda: (
            request.path in EXEMPT_PATHS or request.method == "OPTIONS"
        ),
        storage_uri=settings.ratelimit_storage,
        headers_enabled=True,
        retry_after="delta-seconds",
        strategy="moving-window",
        on_breach=_breached,
        enabled=settings.ratelimit_enabled,
        key_prefix="bridge",
    )
    # Registered before the limiter's own hook so that it runs after it (Flask calls an app's
    # after_request functions in reverse order) and sees the X-RateLimit-* headers.
    app.after_request(openai_headers)
    limiter.init_app(app)
    app.extensions["bridge_limits"] = tiers
    app.extensions["bridge_limiter"] = limiter

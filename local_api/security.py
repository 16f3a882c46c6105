"""Transport hardening: security headers, CORS (off unless origins are configured), ProxyFix."""

from __future__ import annotations

import re

from flask import Flask, Response, request
from werkzeug.datastructures import Headers
from werkzeug.middleware.proxy_fix import ProxyFix

from bridge.config import Settings
from bridge.errors import PayloadTooLarge, ValidationError

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The API serves JSON, not pages: nothing may load from it or frame it.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"
ALLOW_HEADERS = (
    "Authorization, Content-Type, Cache-Control, X-Request-ID, "
    "X-Bridge-Key-Id, X-Bridge-Timestamp, X-Bridge-Nonce, X-Bridge-Signature"
)
# A preflight may name any header a browser client sends (OpenAI's SDK adds x-stainless-*):
# the answer lists what was asked, when each name is a plain HTTP token, else this default.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
MAX_REQUESTED_HEADERS = 64
EXPOSE_HEADERS = (
    "X-Request-ID, X-Cache, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, "
    "X-RateLimit-Reset, retry-after-ms, x-ratelimit-limit-requests, "
    "x-ratelimit-remaining-requests, x-ratelimit-reset-requests"
)


def parse_origins(raw: str) -> frozenset[str]:
    """BRIDGE_CORS_ORIGINS: comma-separated origins (scheme://host[:port]) or ``*``."""
    origins = frozenset(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and (
            "://" not in origin or any(c in origin for c in " \r\n\t") or origin.count("/") != 2
        ):
            raise ValidationError(
                f"BRIDGE_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.org",
                details={"setting": "cors_origins"},
            )
    return origins


def _cors(response: Response, origins: frozenset[str]) -> None:
    origin = request.headers.get("Origin")
    if not origin:
        return
    response.vary.add("Origin")
    if "*" in origins:
        allowed = "*"  # bearer tokens travel in a header, never cookies: no credentials mode
    elif origin in origins:
        allowed = origin
    else:
        return
    response.headers["Access-Control-Allow-Origin"] = allowed
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        methods = response.headers.get("Allow") or "GET, POST, PUT, PATCH, DELETE"
        response.headers["Access-Control-Allow-Methods"] = methods
        response.headers["Access-Control-Allow-Headers"] = _allowed_headers(
            request.headers.get("Access-Control-Request-Headers", "")
        )
        response.vary.add("Access-Control-Request-Headers")
        response.headers["Access-Control-Max-Age"] = "600"


def _allowed_headers(requested: str) -> str:
    """The preflight's requested header names when all are valid tokens, else ALLOW_HEADERS."""
    names = [name.strip() for name in requested.split(",") if name.strip()]
    if not names or len(names) > MAX_REQUESTED_HEADERS:
        return ALLOW_HEADERS
    if not all(_HEADER_NAME.match(name) for name in names):
        return ALLOW_HEADERS
    return ", ".join(names)


def _wire_safe(value: str) -> str:
    """A header value the HTTP server can send: latin-1 only, no control characters."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(c if " " <= c < "\x7f" else c.encode("unicode_escape").decode("ascii")
                   for c in value)


def init_app(app: Flask) -> None:
    """Wire security headers, CORS and ProxyFix into ``app``."""
    settings: Settings = app.config["SETTINGS"]
    origins = parse_origins(settings.cors_origins)
    if settings.proxy_fix < 0:
        raise ValidationError("BRIDGE_PROXY_FIX must be 0 or the number of proxies in front")
    if settings.proxy_fix:
        # Trust exactly that many proxies' X-Forwarded-For/-Proto/-Host/-Prefix headers.
        n = settings.proxy_fix
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_prefix=n
        )

    @app.before_request
    def _refuse_overlong_stream() -> None:
        """A chunked body over MAX_CONTENT_LENGTH is 413, never the first bytes of it.

        werkzeug limits a body without Content-Length (``wsgi.input_terminated``) by reading
        up to the limit and stopping there, so ``get_data`` would return a cut body that may
        still parse (JSON followed by padding). Read it here and look one byte further.
        """
        if request.content_length is not None or request.method in ("GET", "HEAD", "OPTIONS"):
            return
        limit = app.config["MAX_CONTENT_LENGTH"]
        if limit is None or "wsgi.input_terminated" not in request.environ:
            return
        if len(request.get_data(cache=True)) >= limit and request.environ["wsgi.input"].read(1):
            raise PayloadTooLarge()

    @app.after_request
    def _harden(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.is_secure:
            response.headers["Strict-Transport-Security"] = HSTS
        response.headers.setdefault("Cache-Control", "no-store")
        if origins:
            _cors(response, origins)
        # A value echoing user input (a parameter name, say) must not break the response.
        if not all(v.isascii() and v.isprintable() for v in response.headers.values()):
            response.headers = Headers(
                [(k, _wire_safe(v)) for k, v in response.headers.items()]
            )
        return response

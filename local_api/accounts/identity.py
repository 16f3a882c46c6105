"""Who is calling: a JWT access token or an API key, resolved once per request."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, TypeVar

from flask import Flask, Response, g, request
from flask_jwt_extended import JWTManager, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import PyJWTError
from sqlalchemy import select

from bridge.errors import BridgeError, Forbidden, Unauthorized
from local_api.accounts import api_key_store, request_signing
from local_api.errors import error_response
from local_api.storage import schema
from local_api.storage.db import engine
from local_api.storage.secrets_store import load_or_create

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Identity:
    user_id: int
    username: str
    role: str
    tier: str
    rate_limit: str | None
    via: str  # "jwt" | "api_key" | "signature"
    token: dict[str, Any] | None = None
    api_key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def bearer() -> str | None:
    """The bearer credential from the Authorization header (or ?token= on WebSockets), else
    an ``x-api-key`` header (what the ``anthropic`` SDK sends instead: Anthropic's API
    reference, "Authentication")."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Authorization header must be 'Bearer <token>'")
        return value.strip()
    if request.headers.get("X-Api-Key", "").strip():
        return request.headers["X-Api-Key"].strip()
    if request.path == "/ws":
        return request.args.get("token") or None
    return None


def decode(token: str, expected_type: str) -> dict[str, Any]:
    """Verify a JWT (signature, expiry, revocation, type) or raise Unauthorized."""
    try:
        claims: dict[str, Any] = decode_token(token)
    except (JWTExtendedException, PyJWTError) as exc:
        message = "Token has expired" if "expired" in str(exc).lower() else "Invalid token"
        raise Unauthorized(message) from None
    if claims.get("type") != expected_type:
        raise Unauthorized(f"An {expected_type} token is required")
    from local_api.accounts import tokens

    if tokens.is_revoked(claims):  # decode_token does not consult the blocklist
        raise Unauthorized("Token has been revoked")
    return claims


def _load_user(user_id: int) -> Any:
    with engine().connect() as conn:
        row = conn.execute(select(schema.users).where(schema.users.c.id == user_id)).mappings()
        return row.first()


def current_identity() -> Identity | None:
    """The caller, or None when anonymous; raises Unauthorized for bad credentials."""
    if "identity" in g:
        return g.identity  # type: ignore[no-any-return]
    if "identity_error" in g:  # resolved earlier in this request (e.g. by the rate limiter)
        raise g.identity_error
    try:
        g.identity = _resolve()
    except BridgeError as exc:
        g.identity_error = exc
        raise
    return g.identity  # type: ignore[no-any-return]


def _issued_before(claims: dict[str, Any], user: Any) -> bool:
    """A token older than its account was issued to an earlier holder of the id (restored DB)."""
    created = user["created_at"]
    if created.tzinfo is None:  # SQLite returns naive datetimes; we store UTC
        created = created.replace(tzinfo=UTC)
    issued = claims.get("iat")
    return isinstance(issued, int | float) and issued + 1 < created.timestamp()


def _resolve() -> Identity | None:
    if request_signing.present():
        if request.headers.get("Authorization"):
            raise Unauthorized("Send a bearer credential or a request signature, not both")
        key = request_signing.verify()
        user = _load_user(key["user_id"])
        via, claims, key_id = "signature", None, key["id"]
    else:
        credential = bearer()
        if credential is None:
            return None
        if credential.startswith(api_key_store.PREFIX):
            key = api_key_store.lookup(credential)
            request_signing.enroll(key["id"], credential)
            user = _load_user(key["user_id"])
            via, claims, key_id = "api_key", None, key["id"]
        else:
            claims = decode(credential, "access")
            user = _load_user(int(claims["sub"]))
            via, key_id = "jwt", None
            if user is not None and _issued_before(claims, user):
                raise Unauthorized("Token was issued before this account existed")
    if user is None or user["disabled"]:
        raise Unauthorized("The account behind this credential no longer exists or is disabled")
    return Identity(
        user["id"],
        user["username"],
        user["role"],
        user["tier"],
        user["rate_limit"],
        via,
        claims,
        key_id,
    )


def still_valid(who: Identity) -> bool:
    """Whether ``who``'s credential still holds: account enabled, token unexpired and not
    revoked (itself or its refresh family), API key not revoked. Long-lived connections
    (``/ws``) call it periodically; needs an app context."""
    user = _load_user(who.user_id)
    if user is None or user["disabled"]:
        return False
    if who.token is not None:
        from local_api.accounts import tokens

        expires = who.token.get("exp")
        if isinstance(expires, int | float) and expires < time.time():
            return False
        return not tokens.is_revoked(who.token)
    return who.api_key_id is None or api_key_store.is_live(who.api_key_id)


def quiet_identity() -> Identity | None:
    """current_identity for code that must not fail (rate-limit keys, logging)."""
    try:
        return current_identity()
    except BridgeError:
        return None


# both headers are read (the anthropic SDK and Claude Code send only x-api-key)
_MISSING = "Authentication required: send 'Authorization: Bearer <token>' or 'x-api-key: <API key>'"


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_identity() is None:
            raise Unauthorized(_MISSING)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def admin_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        who = current_identity()
        if who is None:
            raise Unauthorized(_MISSING)
        if not who.is_admin:
            raise Forbidden("This action needs an admin account")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.config["JWT_SECRET_KEY"] = settings.jwt_secret or load_or_create(
        settings.home / "jwt_secret"
    )
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(seconds=settings.access_token_ttl)
    app.config["JWT_REFRESH_TOKEN_EXPIRES"] = timedelta(seconds=settings.refresh_token_ttl)
    app.config["JWT_TOKEN_LOCATION"] = ["headers"]
    jwt = JWTManager(app)
    request_signing.init_app(app)

    @jwt.token_in_blocklist_loader
    def _revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        from local_api.accounts import tokens

        return tokens.is_revoked(payload)

    def _reject(message: str) -> Callable[..., Response]:
        return lambda *_a: error_response(Unauthorized(message))

    jwt.expired_token_loader(_reject("Token has expired"))
    jwt.invalid_token_loader(_reject("Invalid token"))
    jwt.unauthorized_loader(_reject("Authentication required"))
    jwt.revoked_token_loader(_reject("Token has been revoked"))
    jwt.needs_fresh_token_loader(_reject("A fresh login is required"))
    jwt.user_lookup_error_loader(_reject("Unknown user"))

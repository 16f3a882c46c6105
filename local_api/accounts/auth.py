"""Accounts and sessions: register, login, refresh, logout, session (FT + AQ)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app

from bridge.errors import Unauthorized, ValidationError
from local_api.accounts import audit, tokens, users
from local_api.accounts.identity import current_identity, decode, login_required
from local_api.docs import spec
from local_api.timeutil import iso
from local_api.validation import json_body, obj

bp = Blueprint("auth", __name__, url_prefix="/auth")

_str = {"type": "string", "minLength": 1, "maxLength": 256}
REGISTER = obj(
    {"username": _str, "email": _str, "password": _str}, ("username", "email", "password")
)
LOGIN = obj({"username": _str, "password": _str}, ("username", "password"))
REFRESH = obj(
    {"refresh_token": {"type": "string", "minLength": 1, "maxLength": 4096}}, ("refresh_token",)
)
LOGOUT = obj({"refresh_token": {"type": "string", "maxLength": 4096}})


@bp.post("/register")
@spec("Register a user (the first becomes admin)", auth="none", body=REGISTER, status=201)
def register() -> tuple[dict[str, Any], int]:
    body = json_body(REGISTER)
    try:
        user_id = users.create_user(body["username"], body["email"], body["password"])
    except Exception as exc:
        audit.record("register", "failure", reason=str(exc)[:200])
        raise
    audit.record("register", user_id=user_id, username=body["username"])
    return {"message": "User registered successfully", "user_id": user_id}, 201


@bp.post("/login")
@spec("Log in; answers FT's message/user_id and AQ's tokens", auth="none", body=LOGIN)
def login() -> dict[str, Any]:
    body = json_body(LOGIN)
    user = users.authenticate(body["username"], body["password"])
    if user is None:
        audit.record("login", "failure", username=body["username"][:64])
        raise Unauthorized("Invalid username or password")
    audit.record("login", user_id=user["id"])
    return {"message": "Login successful", "user_id": user["id"], **tokens.issue(user)}


@bp.post("/refresh")
@spec("Exchange a refresh token for new tokens (rotation)", auth="none", body=REFRESH)
def refresh() -> dict[str, Any]:
    body = json_body(REFRESH)
    claims = decode(body["refresh_token"], "refresh")
    try:
        user_id, family = tokens.rotate(claims)
    except tokens.ReusedRefreshToken as exc:
        audit.record("refresh_reuse", "failure", user_id=exc.user_id, family=exc.family)
        raise
    user = users.get_user(user_id)
    if user is None or user["disabled"]:
        raise Unauthorized("The account no longer exists or is disabled")
    return tokens.issue(user, family)


@bp.post("/logout")
@spec("Revoke the presented access token (and a refresh token if given)", body=LOGOUT)
@login_required
def logout() -> dict[str, Any]:
    body = json_body(LOGOUT, optional=True)
    who = current_identity()
    assert who is not None
    if who.via != "jwt" or who.token is None:
        raise ValidationError("Logout revokes JWTs; revoke API keys at /auth/api-keys/{id}")
    tokens.revoke_access(who.token)
    if body.get("refresh_token"):
        claims = decode(body["refresh_token"], "refresh")
        if claims["sub"] != who.token["sub"]:
            raise ValidationError("That refresh token belongs to another session")
        tokens.revoke_family(claims["fam"])
    audit.record("logout")
    return {"message": "Logged out successfully"}


@bp.get("/session")
@spec("The current session (works unauthenticated)", auth="optional")
def session() -> dict[str, Any]:
    who = current_identity()
    if who is None:
        return {"user_id": None, "username": None, "is_authenticated": False}
    answer: dict[str, Any] = {
        "user_id": who.user_id,
        "username": who.username,
        "is_authenticated": True,
        "role": who.role,
        "tier": who.tier,
        "auth_method": who.via,
    }
    if who.token is not None:
        answer["expires_at"] = iso(datetime.fromtimestamp(who.token["exp"], tz=UTC))
    answer["rate_limit"] = current_app.extensions["bridge_limits"].describe(who)
    return answer

"""JWT issue, refresh rotation with reuse detection, and revocation."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, get_jti
from sqlalchemy import select

from bridge.errors import Unauthorized
from local_api.storage import schema
from local_api.storage.db import engine
from local_api.timeutil import utcnow


def issue(user: Any, family: str | None = None) -> dict[str, Any]:
    """A new access + refresh pair; the refresh token joins ``family`` (new family on login)."""
    settings = current_app.config["SETTINGS"]
    family = family or secrets.token_hex(12)
    # The access token names its refresh family: revoking the family (reuse, logout) ends it too.
    claims = {"role": user["role"], "tier": user["tier"], "username": user["username"],
              "fam": family}
    identity = str(user["id"])
    access = create_access_token(identity=identity, additional_claims=claims)
    refresh = create_refresh_token(identity=identity, additional_claims={"fam": family})
    now = utcnow()
    with engine().begin() as conn:
        conn.execute(
            schema.refresh_tokens.insert().values(
                jti=get_jti(refresh),
                family=family,
                user_id=user["id"],
                status="active",
                expires_at=now + timedelta(seconds=settings.refresh_token_ttl),
                created_at=now,
            )
        )
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": settings.access_token_ttl,
    }


def rotate(claims: dict[str, Any]) -> tuple[int, str]:
    """Spend a refresh token once; a second use revokes its whole family (theft signal)."""
    table = schema.refresh_tokens
    with engine().begin() as conn:  # the revocation must commit before we refuse
        row = conn.execute(select(table).where(table.c.jti == claims["jti"])).mappings().first()
        outcome = "missing" if row is None else row["status"]
        if row is not None and outcome == "used":
            conn.execute(
                table.update().where(table.c.family == row["family"]).values(status="revoked")
            )
        elif outcome == "active":
            spent = conn.execute(
                table.update()
                .where(table.c.jti == claims["jti"], table.c.status == "active")
                .values(status="used")
            )
            outcome = "active" if spent.rowcount == 1 else "raced"
    if row is None:
        raise Unauthorized("Unknown refresh token")
    if outcome == "used":
        raise ReusedRefreshToken(row["user_id"], row["family"])
    if outcome == "raced":  # a concurrent refresh spent it first
        raise Unauthorized("Refresh token has already been used")
    if outcome != "active":
        raise Unauthorized("Refresh token has been revoked")
    return int(row["user_id"]), str(row["family"])


class ReusedRefreshToken(Unauthorized):
    default_message = "Refresh token was already used; the session has been revoked"

    def __init__(self, user_id: int, family: str) -> None:
        super().__init__()
        self.user_id, self.family = user_id, family


def revoke_access(claims: dict[str, Any]) -> None:
    expires = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
    with engine().begin() as conn:
        exists = conn.execute(
            select(schema.revoked_tokens.c.jti).where(schema.revoked_tokens.c.jti == claims["jti"])
        ).first()
        if exists is None:
            conn.execute(
                schema.revoked_tokens.insert().values(jti=claims["jti"], expires_at=expires)
            )


def revoke_family(family: str) -> None:
    table = schema.refresh_tokens
    with engine().begin() as conn:
        conn.execute(table.update().where(table.c.family == family).values(status="revoked"))


def is_revoked(claims: dict[str, Any]) -> bool:
    """Blocklist check used by flask-jwt-extended for every decoded token."""
    with engine().connect() as conn:
        if claims.get("type") == "refresh":
            table = schema.refresh_tokens
            row = conn.execute(select(table.c.status).where(table.c.jti == claims["jti"])).first()
            return row is None or row[0] == "revoked"
        table2 = schema.revoked_tokens
        if conn.execute(select(table2.c.jti).where(table2.c.jti == claims["jti"])).first():
            return True
        family = claims.get("fam")
        if not family:
            return False
        table = schema.refresh_tokens
        revoked = select(table.c.jti).where(table.c.family == family, table.c.status == "revoked")
        return conn.execute(revoked.limit(1)).first() is not None

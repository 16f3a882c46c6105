"""User accounts: creation with argon2 password hashes, lookup and verification."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bridge.errors import Conflict, ValidationError
from local_api.storage import schema
from local_api.storage.db import LOCK_USERS, engine, serialize
from local_api.timeutil import utcnow

_hasher = PasswordHasher()
# A real hash to verify against for unknown users, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash("compute-bridge-timing-equalizer")
_USERNAME = re.compile(r"^[\w.-]{3,32}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
ROLES = ("admin", "user")
TIERS = ("free", "pro", "enterprise")


def normalize_username(raw: str) -> tuple[str, str]:
    """(display name, unique key): NFKC, letters/digits/._- only, case-insensitive key."""
    name = unicodedata.normalize("NFKC", raw).strip()
    if not _USERNAME.match(name) or any(unicodedata.category(c).startswith("C") for c in name):
        raise ValidationError(
            "username must be 3-32 letters, digits, '.', '_' or '-'",
            details={"field": "username"},
        )
    return name, name.casefold()


def normalize_email(raw: str) -> str:
    email = unicodedata.normalize("NFKC", raw).strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValidationError("email is not a valid address", details={"field": "email"})
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def create_user(username: str, email: str, password: str, *, role: str | None = None) -> int:
    """Insert a user; the very first one becomes admin. Conflict when taken."""
    name, key = normalize_username(username)
    email = normalize_email(email)
    if not 8 <= len(password) <= 256:
        raise ValidationError("password must be 8 to 256 characters", details={"field": "password"})
    password_hash = _hasher.hash(password)
    users = schema.users
    with engine().begin() as conn:
        serialize(conn, LOCK_USERS)
        taken = conn.execute(
            select(users.c.username_key, users.c.email).where(
                (users.c.username_key == key) | (func.lower(users.c.email) == email.lower())
            )
        ).first()
        if taken is not None:
            field = "username" if taken[0] == key else "email"
            raise Conflict(f"That {field} is already registered", details={"field": field})
        first = conn.execute(select(func.count()).select_from(users)).scalar_one() == 0
        try:
            result = conn.execute(
                users.insert().values(
                    username=name,
                    username_key=key,
                    email=email,
                    password_hash=password_hash,
                    role=role or ("admin" if first else "user"),
                    tier="free",
                    disabled=False,
                    preferences={},
                    created_at=utcnow(),
                )
            )
        except IntegrityError:
            raise Conflict("That username or email is already registered") from None
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def authenticate(username: str, password: str) -> Any | None:
    """The user row when the password matches, else None (same cost either way)."""
    try:
        _, key = normalize_username(username)
    except ValidationError:
        key = None
    row = None
    if key is not None:
        with engine().connect() as conn:
            row = (
                conn.execute(select(schema.users).where(schema.users.c.username_key == key))
                .mappings()
                .first()
            )
    try:
        _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled"]:
        return None
    return row


def get_user(user_id: int) -> Any:
    with engine().connect() as conn:
        return (
            conn.execute(select(schema.users).where(schema.users.c.id == user_id))
            .mappings()
            .first()
        )


def public(row: Any) -> dict[str, Any]:
    """What a user may see of an account."""
    from local_api.timeutil import iso

    prefs = row["preferences"] or {}
    return {
        "id": row["id"],
        "username": row["username"],
        "email": row["email"],
        "role": row["role"],
        "tier": row["tier"],
        "created_at": iso(row["created_at"]),
        "preferences": {
            "theme": prefs.get("theme", "system"),
            "default_model": prefs.get("default_model"),
            "other_preferences": prefs.get("other_preferences", {}),
        },
    }

"""The database: one SQLAlchemy engine per app, SQLite tuned for safety by default."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from sqlalchemy import Connection, Engine, create_engine, event, text

from bridge.errors import ValidationError
from local_api.storage.migrations import migrate

SYNCHRONOUS = ("NORMAL", "FULL")


def create_db_engine(
    url: str, synchronous: str = "NORMAL", *, pool_size: int = 10, max_overflow: int = 10
) -> Engine:
    """An engine; SQLite gets WAL, foreign keys, a busy timeout and ``synchronous``;
    PostgreSQL (psycopg 3) a bounded pool, checked before use and recycled half-hourly."""
    if url.startswith("sqlite"):
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValidationError(
                f"BRIDGE_SQLITE_SYNCHRONOUS must be NORMAL or FULL, not {synchronous!r}",
                details={"setting": "sqlite_synchronous"},
            )
        pragma = f"PRAGMA synchronous={synchronous.upper()}"
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(pragma)
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, declared
    return create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow,
        pool_recycle=1800, pool_timeout=30,
    )


def serialize(conn: Connection, lock: int) -> None:
    """Run the rest of this transaction alone among those taking ``lock``: on PostgreSQL a
    transaction-scoped advisory lock (READ COMMITTED lets two read-then-write transactions
    interleave); SQLite already runs one writer at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock})


LOCK_USERS = 7202  # registration: the first account becomes admin, exactly once


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    if settings.db_url.startswith("sqlite"):
        settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(
        settings.db_url, settings.sqlite_synchronous,
        pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
    )
    with engine.begin() as conn:
        migrate(conn)
    app.extensions["db"] = engine


def engine() -> Engine:
    """The current app's engine."""
    return current_app.extensions["db"]  # type: ignore[no-any-return]

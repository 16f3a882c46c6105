"""The database: one SQLAlchemy engine per app, SQLite tuned for safety by default."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from sqlalchemy import Engine, create_engine, event

from local_api.migrations import migrate


def create_db_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL, foreign keys, a busy timeout and synchronous=FULL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    if settings.db_url.startswith("sqlite"):
        settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.db_url)
    with engine.begin() as conn:
        migrate(conn)
    app.extensions["db"] = engine


def engine() -> Engine:
    """The current app's engine."""
    return current_app.extensions["db"]  # type: ignore[no-any-return]

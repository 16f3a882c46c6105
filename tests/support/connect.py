"""What the connect tests share (not fixtures: those stay in each module): constants and
small helpers that read the API and the database (SQLite, or the PostgreSQL of the test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from local_api.storage.db import create_db_engine
from tests.support.app import Auth

SECRET = "a-worker-secret-of-some-length"
RUNTIME = {"type": "colab", "device": "cuda", "gpu": "Tesla T4",
           "memory": {"gpu_total_mb": 15360, "host_total_mb": 13000}}
CONNECT = "/api/v1/system/colab/connect"
WORKER_ANSWER = "Paris, answered on the GPU."


def admin(client: FlaskClient) -> dict[str, str]:
    return Auth(client).headers("admin")  # the first account is the admin


def ask(client: FlaskClient, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    answer = client.post("/api/v1/chat/completion", json={"prompt": "Capital of France?", **extra},
                         headers={**headers, "Cache-Control": "no-cache"})
    assert answer.status_code == 200, answer.get_json()
    return dict(answer.get_json())


DATABASES: dict[Path, str] = {}  # home -> the database its apps use (servers.connect_database)


def _engine(home: Path) -> Engine:
    return create_db_engine(DATABASES.get(home) or f"sqlite:///{home / 'bridge.db'}")


def _as_sqlite(value: Any) -> Any:
    """A JSON column as SQLite hands it back (text; psycopg parses it) so checks read alike."""
    return json.dumps(value) if isinstance(value, dict | list) else value


def rows(home: Path, sql: str) -> list[Any]:
    engine = _engine(home)
    try:
        with engine.connect() as conn:
            return [tuple(_as_sqlite(v) for v in row) for row in conn.execute(text(sql)).all()]
    finally:
        engine.dispose()


def execute(home: Path, *statements: str) -> None:
    engine = _engine(home)
    try:
        with engine.begin() as conn:
            for sql in statements:
                conn.execute(text(sql))
    finally:
        engine.dispose()


def refuse_inserts(home: Path, table: str) -> None:
    """Make the database refuse every insert into ``table`` ('disk full') until allow_inserts."""
    if DATABASES.get(home, "").startswith("postgres"):
        execute(home, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                      "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
                f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse()")
    else:
        execute(home, f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                      "BEGIN SELECT RAISE(ABORT, 'disk full'); END")


def allow_inserts(home: Path, table: str) -> None:
    if DATABASES.get(home, "").startswith("postgres"):
        execute(home, f"DROP TRIGGER refuse ON {table}", "DROP FUNCTION refuse()")
    else:
        execute(home, "DROP TRIGGER refuse")


def worker_entry(client: FlaskClient, headers: dict[str, str], name: str) -> dict[str, Any]:
    status = client.get("/api/v1/system/status", headers=headers).get_json()
    found = [b for b in status["backends"] if b["name"] == name]
    assert found, status["backends"]
    return dict(found[0])

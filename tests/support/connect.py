"""What the connect tests share (not fixtures: those stay in each module): constants and
small helpers that read the API and the SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

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


def rows(home: Path, sql: str) -> list[Any]:
    engine = create_engine(f"sqlite:///{home / 'bridge.db'}")
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).all())
    finally:
        engine.dispose()


def execute(home: Path, *statements: str) -> None:
    engine = create_engine(f"sqlite:///{home / 'bridge.db'}")
    try:
        with engine.begin() as conn:
            for sql in statements:
                conn.execute(text(sql))
    finally:
        engine.dispose()


def worker_entry(client: FlaskClient, headers: dict[str, str], name: str) -> dict[str, Any]:
    status = client.get("/api/v1/system/status", headers=headers).get_json()
    found = [b for b in status["backends"] if b["name"] == name]
    assert found, status["backends"]
    return dict(found[0])

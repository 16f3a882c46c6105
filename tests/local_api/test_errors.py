"""Every failure answers in the one envelope of API.md, with a request id and no traceback."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.app import Auth


def assert_envelope(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert response.status_code == status
    assert response.is_json, response.data[:200]
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    return dict(error)


def test_unknown_route_and_wrong_method(client: FlaskClient) -> None:
    assert_envelope(client.get("/api/v1/nope"), 404, "NOT_FOUND")
    error = assert_envelope(client.delete("/api/v1/auth/login"), 405, "METHOD_NOT_ALLOWED")
    assert "POST" in error["details"]["allowed"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"text"', "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
    ],
)
def test_non_json_bodies(client: FlaskClient, data: bytes, content_type: str) -> None:
    response = client.post("/api/auth/register", data=data, content_type=content_type)
    assert_envelope(response, 400, "VALIDATION_ERROR")


def test_oversized_body_is_413(client: FlaskClient) -> None:
    big = b'{"username": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    assert_envelope(
        client.post("/api/auth/register", data=big, content_type="application/json"),
        413,
        "PAYLOAD_TOO_LARGE",
    )


def test_deeply_nested_json_is_refused_cleanly(client: FlaskClient, auth: Auth) -> None:
    headers = auth.headers()
    nested = "[" * 100_000 + "]" * 100_000
    response = client.put(
        "/api/user/preferences", headers=headers, data=nested, content_type="application/json"
    )
    assert_envelope(response, 400, "VALIDATION_ERROR")


def test_unexpected_exception_is_internal_error_with_logged_request_id(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    with caplog.at_level(logging.ERROR, logger="compute_bridge.api"):
        response = client.get("/boom", headers={"X-Request-ID": "trace-12345678"})
    error = assert_envelope(response, 500, "INTERNAL_ERROR")
    assert error["request_id"] == "trace-12345678"
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert any("trace-12345678" in r.getMessage() for r in caplog.records)


def test_sql_metacharacters_are_just_text(client: FlaskClient, auth: Auth) -> None:
    response = client.post(
        "/api/auth/login", json={"username": "x' OR '1'='1", "password": "' OR 1=1 --"}
    )
    assert_envelope(response, 401, "UNAUTHORIZED")
    headers = auth.headers()
    prefs = {"preferences": {"other_preferences": {"note": "'; DROP TABLE users; --"}}}
    assert client.put("/api/user/preferences", headers=headers, json=prefs).status_code == 200
    assert client.get("/api/user/profile", headers=headers).status_code == 200

"""Transport hardening and hostile input: headers, CORS, ProxyFix, HTTPS, injection, traversal."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import sqlite3
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient

from bridge.errors import ValidationError
from tests.support.app import Auth, LiveServer
from tests.support.live_process import serve

API = "/api/v1"


def assert_envelope(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert set(error) <= {"code", "message", "details", "request_id"}
    assert error["message"] and error["request_id"]
    if code:
        assert error["code"] == code
    return dict(error)


# ---- headers, CORS, ProxyFix -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/auth/session", "/api/v1/nope", "/metrics", "/healthz"])
def test_security_headers_everywhere(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP: no HSTS
    assert "Access-Control-Allow-Origin" not in response.headers


def test_hsts_only_over_https(client: FlaskClient) -> None:
    secure = client.get("/healthz", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    # A forwarded "https" is not believed unless ProxyFix is on.
    forwarded = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in forwarded.headers


def test_cors_is_off_by_default(client: FlaskClient) -> None:
    response = client.options("/api/v1/models", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


def test_cors_for_configured_origins(make_app, home: Path) -> None:
    app = make_app({"home": home, "cors_origins": "https://app.example.org, http://localhost:3000"})
    client = app.test_client()
    preflight = client.options("/api/v1/generate", headers={
        "Origin": "https://app.example.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "Origin" in preflight.headers["Vary"]
    actual = client.get("/api/v1/auth/session", headers={"Origin": "http://localhost:3000"})
    assert actual.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-Request-ID" in actual.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in actual.headers
    other = client.get("/api/v1/auth/session", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_wildcard_and_bad_setting(make_app, home: Path, tmp_path: Path) -> None:
    client = make_app({"home": home, "cors_origins": "*"}).test_client()
    response = client.get("/healthz", headers={"Origin": "https://anywhere.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    with pytest.raises(ValidationError, match="not an origin"):
        make_app({"home": tmp_path / "other", "cors_origins": "app.example.org/path"})


def test_proxy_fix_trusts_exactly_the_configured_proxies(make_app, tmp_path: Path) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    for proxies, address, hsts in ((0, "127.0.0.1", False), (1, "203.0.113.7", True)):
        app = make_app({"home": tmp_path / str(proxies), "proxy_fix": proxies})
        client = app.test_client()
        auth = Auth(client)
        auth.register("admin")
        response = client.post(f"{API}/auth/login", headers=forwarded,
                               json={"username": "admin", "password": "correct horse"})
        assert ("Strict-Transport-Security" in response.headers) is hsts
        token = response.get_json()["access_token"]
        events = client.get(f"{API}/audit?event=login",
                            headers={"Authorization": f"Bearer {token}"}).get_json()["events"]
        assert events[0]["address"] == address


# ---- HTTPS with a real `bridge serve --tls-cert --tls-key` --------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
            ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_https_serving_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with serve(tmp_path / "home", "--tls-cert", str(cert), "--tls-key", str(key)) as (_p, url):
        assert url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=context, timeout=30) as https:
            response = https.get("/api/v1/auth/session")
            assert response.status_code == 200 and response.json()["is_authenticated"] is False
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")
            registered = https.post("/api/auth/register", json={
                "username": "alice", "email": "alice@example.org", "password": "correct horse"})
            assert registered.status_code == 201
        with pytest.raises(httpx.ConnectError):  # the certificate is checked, not ignored
            httpx.get(f"{url}/healthz", timeout=10)
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # HTTP on the TLS port
            try:
                answer = plain.recv(4096)
            except ConnectionResetError:
                answer = b""
        assert b'"status": "ok"' not in answer


# ---- hostile input -----------------------------------------------------------------------


def test_oversized_body_is_refused(make_app, home: Path) -> None:
    client = make_app({"home": home, "max_body_bytes": 64 * 1024}).test_client()
    big = json.dumps({"username": "a" * 100_000, "email": "a@example.org", "password": "x" * 9})
    response = client.post("/api/auth/register", data=big, content_type="application/json")
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("depth", [40, 5000, 100_000])
def test_deeply_nested_json_is_refused(client: FlaskClient, auth: Auth, depth: int) -> None:
    headers = auth.headers()
    nested = "[" * depth + "]" * depth
    body = '{"preferences": {"other_preferences": {"x": ' + nested + "}}}"
    response = client.put(f"{API}/user/preferences", headers=headers, data=body,
                          content_type="application/json")
    assert_envelope(response, 400, "VALIDATION_ERROR")
    profile = client.get(f"{API}/user/profile", headers=headers).get_json()["user"]
    assert profile["preferences"]["other_preferences"] == {}


@pytest.mark.parametrize("value", ["a" * 65, "evil value", "x\tinjected", "<script>x</script>",
                                   "abc", "id;Set-Cookie:a=b"])
def test_request_id_header_is_not_reflected_unless_well_formed(client: FlaskClient,
                                                               value: str) -> None:
    response = client.get("/api/v1/nope", headers={"X-Request-ID": value})
    echoed = response.headers["X-Request-ID"]
    assert echoed != value and len(echoed) == 16
    assert response.get_json()["error"]["request_id"] == echoed
    assert "Set-Cookie" not in response.headers


def test_header_injection_over_raw_http(app: Flask) -> None:
    with LiveServer(app) as server:
        port = int(server.url.rsplit(":", 1)[1])
        request = (b"GET /api/v1/auth/session HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"X-Request-ID: abcdefgh\rSet-Cookie: session=evil\r\n"
                   b"Origin: https://evil.example\r\n\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(request)
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"set-cookie" not in head and b"evil" not in head
    assert head.startswith(b"http/1.1 ")


def test_response_headers_stay_sendable_whatever_the_input(tmp_path: Path) -> None:
    """A parameter name echoed into a header (X-Bridge-Ignored-Params) cannot break the answer."""
    from local_api import shutdown
    from tests.support.fuzzing import build

    target = build(tmp_path / "home")
    try:
        with LiveServer(target.app) as server, httpx.Client(base_url=server.url,
                                                             timeout=10) as http:
            body = json.dumps({"\u0100\u2028name": 1, "prompt": "hi"})
            response = http.post("/v1/completions", content=body, headers={
                **target.admin, "Content-Type": "application/json"})
            assert response.status_code == 200  # an answer, not a dropped connection
            assert all(v.isascii() and v.isprintable() for v in response.headers.values())
            assert "X-Bridge-Ignored-Params" not in response.headers  # such names are not echoed
    finally:
        shutdown(target.app)


SQL = "'; DROP TABLE users; --"
SQL2 = "\" OR 1=1 /*"


def test_sql_metacharacters_in_every_string_field(client: FlaskClient, auth: Auth,
                                                  home: Path) -> None:
    admin = auth.headers("admin")
    # Accounts: metacharacters are refused by validation or stored verbatim, never executed.
    weird = client.post("/api/auth/register", json={
        "username": "o.brien", "email": "o'brien+x@example.org", "password": SQL + SQL2})
    assert weird.status_code == 201
    assert_envelope(client.post("/api/auth/register", json={
        "username": SQL, "email": "x@example.org", "password": "correct horse"}), 400)
    assert_envelope(client.post(f"{API}/auth/login", json={
        "username": "admin' --", "password": SQL}), 401, "UNAUTHORIZED")
    login = client.post(f"{API}/auth/login", json={"username": "o.brien", "password": SQL + SQL2})
    assert login.status_code == 200
    # Strings that are stored come back exactly.
    key = client.post(f"{API}/auth/api-keys", headers=admin, json={"name": SQL}).get_json()
    assert key["name"] == SQL
    prefs = {"default_model": SQL2, "other_preferences": {SQL: SQL2, "k": [SQL]}}
    assert client.put(f"{API}/user/preferences", headers=admin,
                      json={"preferences": prefs}).status_code == 200
    stored = client.get(f"{API}/user/profile", headers=admin).get_json()["user"]["preferences"]
    assert stored["default_model"] == SQL2 and stored["other_preferences"][SQL] == SQL2
    # Ids, queries and paths.
    for path in (f"/conversations/{SQL}", "/conversations/x' OR '1'='1",
                 f"/auth/api-keys/{SQL2}"):
        method = client.delete if "api-keys" in path else client.get
        assert_envelope(method(f"{API}{path}", headers=admin), 404)
    events = client.get(f"{API}/audit", headers=admin, query_string={"event": "x' OR '1'='1"})
    assert events.status_code == 200 and events.get_json()["events"] == []
    assert_envelope(client.get(f"{API}/audit", headers=admin,
                               query_string={"user_id": "1 OR 1=1"}), 400)
    assert_envelope(client.patch(f"{API}/admin/users/2", headers=admin,
                                 json={"rate_limit": f"1/minute{SQL}"}), 400)
    assert_envelope(client.post(f"{API}/chat/completion", headers=admin,
                                json={"prompt": "hi", "model_id": SQL}), 404, "MODEL_NOT_FOUND")
    # Everything is still there.
    with sqlite3.connect(home / "bridge.db") as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"users", "api_keys", "audit_log", "conversations", "messages"} <= tables
        assert raw.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 2
        assert raw.execute("SELECT name FROM api_keys").fetchall() == [(SQL,)]


@pytest.mark.parametrize("path", [
    "/conversations/..%2F..%2Fetc%2Fpasswd", "/conversations/%2e%2e", "/auth/api-keys/..",
    "/models/..%2F..%2Fsecret.key/status", "/conversations/" + "%00",
])
def test_path_traversal_in_ids(client: FlaskClient, auth: Auth, path: str) -> None:
    headers = auth.headers()
    for method in ("get", "delete"):
        response = getattr(client, method)(f"{API}{path}", headers=headers)
        assert response.status_code in (400, 404, 405), response.data
        assert response.get_json()["error"]["code"] in (
            "VALIDATION_ERROR", "NOT_FOUND", "METHOD_NOT_ALLOWED", "MODEL_NOT_FOUND")
    load = client.post(f"{API}/models/load", headers=headers,
                       json={"model_id": "../../secret.key"})
    assert load.status_code in (400, 404) and load.get_json()["error"]["code"]

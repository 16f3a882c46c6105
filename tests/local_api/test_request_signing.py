"""Signed requests for API clients: HMAC of method, path, timestamp, nonce and body, per API key."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.signing import sign
from local_api.accounts.request_signing import derive
from tests.support.app import Auth, LiveServer

# on SQLite and on a real PostgreSQL (tests/support/servers.py)
pytestmark = pytest.mark.usefixtures("database_url")

API = "/api/v1"


def readme_headers(api_key: str, key_id: str, method: str, path: str,
                   body: bytes = b"") -> dict[str, str]:
    """The client code the README shows (hashlib and hmac only, no Compute Bridge import)."""
    signing_key = hmac.new(api_key.encode(), b"bridge-request-signing-v1",
                           hashlib.sha256).hexdigest()
    timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
    message = "\n".join(["bridge-hmac-v2", method.upper(), path, timestamp, nonce, key_id,
                         hashlib.sha256(body).hexdigest()])
    signature = hmac.new(signing_key.encode(), message.encode(), hashlib.sha256).hexdigest()
    return {"X-Bridge-Key-Id": key_id, "X-Bridge-Timestamp": timestamp,
            "X-Bridge-Nonce": nonce, "X-Bridge-Signature": signature}


@pytest.fixture
def key(client: FlaskClient, auth: Auth) -> dict[str, Any]:
    """An API key of alice's (enrolled for signing when created), used once as a bearer."""
    headers = auth.headers("alice")
    created = client.post(f"{API}/auth/api-keys", headers=headers, json={"name": "signer"})
    body = dict(created.get_json())
    assert client.get(f"{API}/auth/session",
                      headers={"Authorization": f"Bearer {body['key']}"}).status_code == 200
    return body


def signed(key: dict[str, Any], method: str, path: str, body: bytes = b"",
           **kwargs: Any) -> dict[str, str]:
    return sign(derive(key["key"]), method, path, body, key_id=key["id"], **kwargs)


def _theme(client: FlaskClient, key: dict[str, Any]) -> str:
    headers = {"Authorization": f"Bearer {key['key']}"}
    return str(client.get(f"{API}/user/profile", headers=headers)
               .get_json()["user"]["preferences"]["theme"])


def test_signed_requests_authenticate_without_sending_the_key(client: FlaskClient,
                                                              key: dict[str, Any]) -> None:
    path = f"{API}/auth/session"
    response = client.get(path, headers=signed(key, "GET", path))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["is_authenticated"] is True and body["username"] == "alice"
    assert body["auth_method"] == "signature"
    data = json.dumps({"preferences": {"theme": "dark"}}).encode()
    path = f"{API}/user/preferences"
    response = client.put(path, data=data, content_type="application/json",
                          headers=signed(key, "PUT", path, data))
    assert response.status_code == 200 and _theme(client, key) == "dark"


def test_replayed_request_is_refused(client: FlaskClient, key: dict[str, Any]) -> None:
    data = json.dumps({"preferences": {"theme": "dark"}}).encode()
    path = f"{API}/user/preferences"
    headers = signed(key, "PUT", path, data)
    first = client.put(path, data=data, content_type="application/json", headers=headers)
    assert first.status_code == 200
    again = client.put(path, data=data, content_type="application/json", headers=headers)
    assert again.status_code == 401
    assert again.get_json()["error"]["message"] == "Replayed request (nonce already used)"


@pytest.mark.parametrize("tamper", ["body", "path", "method", "key_id", "signature"])
def test_tampered_requests_are_refused_and_change_nothing(client: FlaskClient,
                                                          key: dict[str, Any],
                                                          tamper: str) -> None:
    path = f"{API}/user/preferences"
    data = json.dumps({"preferences": {"theme": "dark"}}).encode()
    headers = signed(key, "PUT", path, data)
    method = "put"
    if tamper == "body":
        data = json.dumps({"preferences": {"theme": "light"}}).encode()
    elif tamper == "path":
        path = "/api/user/preferences"
    elif tamper == "method":
        method = "post"
    elif tamper == "key_id":
        headers["X-Bridge-Key-Id"] = "0" * 16
    else:
        headers["X-Bridge-Signature"] = "0" * 64
    response = getattr(client, method)(path, data=data, content_type="application/json",
                                       headers=headers)
    assert response.status_code in (401, 405)
    assert response.get_json()["error"]["code"] in ("UNAUTHORIZED", "METHOD_NOT_ALLOWED")
    assert _theme(client, key) == "system"


def test_stale_timestamp_is_refused(client: FlaskClient, key: dict[str, Any]) -> None:
    path = f"{API}/auth/session"
    old = signed(key, "GET", path, timestamp=int(time.time()) - 3600)
    response = client.get(path, headers=old)
    assert response.status_code == 401 and "Stale" in response.get_json()["error"]["message"]


def test_revoked_key_cannot_sign(client: FlaskClient, auth: Auth, key: dict[str, Any]) -> None:
    revoked = client.delete(f"{API}/auth/api-keys/{key['id']}", headers=auth.headers("alice"))
    assert revoked.status_code == 200
    path = f"{API}/auth/session"
    response = client.get(path, headers=signed(key, "GET", path))
    assert response.status_code == 401 and "revoked" in response.get_json()["error"]["message"]


def test_a_new_key_signs_at_once_and_both_schemes_at_once_are_refused(
    client: FlaskClient, auth: Auth, key: dict[str, Any]
) -> None:
    fresh = client.post(f"{API}/auth/api-keys", headers=auth.headers("alice"),
                        json={"name": "unused"}).get_json()
    path = f"{API}/auth/session"
    assert client.get(path, headers=signed(fresh, "GET", path)).status_code == 200
    stranger = {**fresh, "id": "0" * 16}
    assert client.get(path, headers=signed(stranger, "GET", path)).status_code == 401
    both = {**signed(key, "GET", path), "Authorization": f"Bearer {key['key']}"}
    response = client.get(path, headers=both)
    assert response.status_code == 401 and "not both" in response.get_json()["error"]["message"]


def _pg(conn: Any) -> bool:
    return bool(conn.dialect.name == "postgresql")


def test_a_copy_of_the_database_is_not_enough_to_sign(app: Flask, client: FlaskClient,
                                                      key: dict[str, Any]) -> None:
    with app.extensions["db"].connect() as raw:  # what a copy of the database holds
        stored_hash = raw.exec_driver_sql(
            "SELECT secret_hash FROM api_keys WHERE id = %s" if _pg(raw) else
            "SELECT secret_hash FROM api_keys WHERE id = ?", (key["id"],)).scalar_one()
        sealed = raw.exec_driver_sql(
            "SELECT secret_enc FROM api_key_signing WHERE key_id = %s" if _pg(raw) else
            "SELECT secret_enc FROM api_key_signing WHERE key_id = ?", (key["id"],)).scalar_one()
    assert derive(key["key"]) not in sealed and key["key"] not in sealed
    path = f"{API}/auth/session"
    forged = sign(stored_hash, "GET", path, key_id=key["id"])
    assert client.get(path, headers=forged).status_code == 401


def test_readme_client_over_real_http_with_a_query_string(app: Flask, client: FlaskClient,
                                                          auth: Auth) -> None:
    admin = auth.headers("alice")  # the first account: an admin
    key = client.post(f"{API}/auth/api-keys", headers=admin, json={"name": "ops"}).get_json()
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(f"{API}/auth/session",
                        headers={"Authorization": f"Bearer {key['key']}"}).status_code == 200
        path = f"{API}/audit?event=api_key_created&limit=5"
        response = http.get(path, headers=readme_headers(key["key"], key["id"], "GET", path))
        assert response.status_code == 200, response.text
        assert response.json()["events"][0]["details"]["key_id"] == key["id"]
        body = json.dumps({"name": "made by a signed request"}).encode()
        path = f"{API}/auth/api-keys"
        made = http.post(path, content=body, headers={
            "Content-Type": "application/json",
            **readme_headers(key["key"], key["id"], "POST", path, body)})
        assert made.status_code == 201 and made.json()["name"] == "made by a signed request"

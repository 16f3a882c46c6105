"""API keys: created once, stored hashed, usable as a bearer, revocable, private to their owner."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from local_api.storage import schema
from tests.support.app import Auth

# on SQLite and on a real PostgreSQL (tests/support/servers.py)
pytestmark = pytest.mark.usefixtures("database_url")


def test_key_lifecycle(app, client: FlaskClient, auth: Auth) -> None:  # type: ignore[no-untyped-def]
    headers = auth.headers()
    created = client.post("/api/auth/api-keys", headers=headers, json={"name": "notebook"})
    assert created.status_code == 201
    body = created.get_json()
    key = body["key"]
    assert key.startswith(body["prefix"] + "_") and body["name"] == "notebook"

    # Stored hashed: the secret is nowhere in the database.
    with app.extensions["db"].connect() as conn:
        row = conn.execute(select(schema.api_keys)).mappings().one()
    assert key not in str(dict(row)) and len(row["secret_hash"]) == 64

    as_key = {"Authorization": f"Bearer {key}"}
    session = client.get("/api/auth/session", headers=as_key).get_json()
    assert session["is_authenticated"] and session["auth_method"] == "api_key"
    assert (
        client.get("/api/v1/user/profile", headers=as_key).get_json()["user"]["username"] == "alice"
    )

    listed = client.get("/api/v1/auth/api-keys", headers=headers).get_json()["api_keys"]
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0] and listed[0]["last_used_at"] is not None

    revoked = client.delete(f"/api/v1/auth/api-keys/{body['id']}", headers=headers)
    assert revoked.status_code == 200
    refused = client.get("/api/v1/user/profile", headers=as_key)
    assert refused.status_code == 401
    assert refused.get_json()["error"]["message"] == "This API key has been revoked"


def test_wrong_or_malformed_keys_are_refused(client: FlaskClient, auth: Auth) -> None:
    headers = auth.headers()
    key = client.post("/api/auth/api-keys", headers=headers, json={}).get_json()["key"]
    for bad in (key[:-1] + ("A" if key[-1] != "A" else "B"), "cb_", "cb_nope", "cb_xx_yy"):
        response = client.get("/api/v1/user/profile", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, bad


def test_users_cannot_see_or_revoke_each_others_keys(client: FlaskClient, auth: Auth) -> None:
    alice = auth.headers("alice")
    bob = auth.headers("bob")
    key_id = client.post("/api/auth/api-keys", headers=alice, json={}).get_json()["id"]
    assert client.get("/api/auth/api-keys", headers=bob).get_json()["api_keys"] == []
    stolen = client.delete(f"/api/auth/api-keys/{key_id}", headers=bob)
    assert stolen.status_code == 404
    assert len(client.get("/api/auth/api-keys", headers=alice).get_json()["api_keys"]) == 1


def test_key_creation_validates_and_needs_auth(client: FlaskClient, auth: Auth) -> None:
    assert client.post("/api/auth/api-keys", json={"name": "x"}).status_code == 401
    headers = auth.headers()
    too_long = client.post("/api/auth/api-keys", headers=headers, json={"name": "x" * 101})
    assert too_long.status_code == 400
    assert client.post("/api/auth/api-keys", headers=headers, json={"nom": "x"}).status_code == 400
    assert client.get("/api/auth/api-keys", headers=headers).get_json()["api_keys"] == []

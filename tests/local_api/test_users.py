"""Profile, preferences and admin account management."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.support.app import Auth

# on SQLite and on a real PostgreSQL (tests/support/servers.py)
pytestmark = pytest.mark.usefixtures("database_url")


def test_profile_and_preferences_roundtrip(client: FlaskClient, auth: Auth) -> None:
    headers = auth.headers()
    profile = client.get("/api/user/profile", headers=headers).get_json()["user"]
    assert profile["username"] == "alice" and profile["email"] == "alice@example.org"
    assert profile["preferences"] == {
        "theme": "system",
        "default_model": None,
        "other_preferences": {},
    }

    update = {
        "preferences": {
            "theme": "dark",
            "default_model": "smollm2-135m-instruct",
            "other_preferences": {"font_size": 14},
        }
    }
    response = client.put("/api/user/preferences", headers=headers, json=update)
    assert response.status_code == 200
    assert response.get_json()["message"] == "Preferences updated successfully"
    prefs = client.get("/api/v1/user/profile", headers=headers).get_json()["user"]["preferences"]
    assert prefs == update["preferences"]

    # Partial update keeps the other fields.
    client.put("/api/user/preferences", headers=headers, json={"preferences": {"theme": "light"}})
    prefs = client.get("/api/v1/user/profile", headers=headers).get_json()["user"]["preferences"]
    assert prefs["theme"] == "light" and prefs["default_model"] == "smollm2-135m-instruct"


def test_bad_preferences_change_nothing(client: FlaskClient, auth: Auth) -> None:
    headers = auth.headers()
    client.put("/api/user/preferences", headers=headers, json={"preferences": {"theme": "dark"}})
    for bad in (
        {"preferences": {"theme": "neon"}},
        {"preferences": {"colour": "red"}},
        {"preferences": "dark"},
        {"theme": "dark"},
        {"preferences": {"other_preferences": {"blob": "x" * 20000}}},
    ):
        response = client.put("/api/user/preferences", headers=headers, json=bad)
        assert response.status_code == 400, bad
        assert response.get_json()["error"]["code"] == "VALIDATION_ERROR"
    prefs = client.get("/api/user/profile", headers=headers).get_json()["user"]["preferences"]
    assert prefs["theme"] == "dark" and prefs["other_preferences"] == {}


def test_users_see_only_themselves(client: FlaskClient, auth: Auth) -> None:
    auth.headers("alice")
    bob = auth.headers("bob")
    assert client.get("/api/user/profile", headers=bob).get_json()["user"]["username"] == "bob"
    assert client.get("/api/v1/admin/users", headers=bob).status_code == 403
    assert (
        client.patch("/api/v1/admin/users/1", headers=bob, json={"role": "user"}).status_code == 403
    )


def test_admin_sets_tier_role_and_disables(client: FlaskClient, auth: Auth) -> None:
    admin = auth.headers("root")
    bob = auth.headers("bob")
    users = client.get("/api/v1/admin/users", headers=admin).get_json()["users"]
    bob_id = next(u["id"] for u in users if u["username"] == "bob")
    response = client.patch(f"/api/v1/admin/users/{bob_id}", headers=admin, json={"tier": "pro"})
    assert response.status_code == 200 and response.get_json()["user"]["tier"] == "pro"
    assert client.get("/api/user/profile", headers=bob).get_json()["user"]["tier"] == "pro"
    bad = client.patch(f"/api/v1/admin/users/{bob_id}", headers=admin, json={"rate_limit": "lots"})
    assert bad.status_code == 400
    assert (
        client.patch("/api/v1/admin/users/999", headers=admin, json={"tier": "pro"}).status_code
        == 404
    )
    client.patch(f"/api/v1/admin/users/{bob_id}", headers=admin, json={"disabled": True})
    assert client.get("/api/user/profile", headers=bob).status_code == 401
    login = client.post("/api/auth/login", json={"username": "bob", "password": "correct horse"})
    assert login.status_code == 401


def test_audit_log_records_security_events(client: FlaskClient, auth: Auth) -> None:
    admin = auth.headers("root")
    client.post("/api/auth/login", json={"username": "root", "password": "wrong-password"})
    key_id = client.post("/api/auth/api-keys", headers=admin, json={}).get_json()["id"]
    client.delete(f"/api/auth/api-keys/{key_id}", headers=admin)
    client.put("/api/user/preferences", headers=admin, json={"preferences": {"theme": "dark"}})
    events = client.get("/api/v1/audit", headers=admin).get_json()["events"]
    seen = [(e["event"], e["outcome"]) for e in events]
    for expected in [
        ("register", "success"),
        ("login", "success"),
        ("login", "failure"),
        ("api_key_created", "success"),
        ("api_key_revoked", "success"),
        ("preferences_changed", "success"),
    ]:
        assert expected in seen
    failure = next(e for e in events if e["event"] == "login" and e["outcome"] == "failure")
    assert failure["address"] == "127.0.0.1" and failure["timestamp"][-6] in "+-"
    only = client.get("/api/v1/audit?event=login&limit=1", headers=admin).get_json()
    assert len(only["events"]) == 1 and only["total"] == 2  # one success, one failure
    assert client.get("/api/v1/audit?limit=abc", headers=admin).status_code == 400
    bob = auth.headers("bob")
    assert client.get("/api/v1/audit", headers=bob).status_code == 403

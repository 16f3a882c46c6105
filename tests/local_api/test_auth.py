"""Accounts and sessions through the real app: both documents' shapes and the bad inputs."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from local_api.storage import schema
from tests.support.app import Auth

# on SQLite and on a real PostgreSQL (tests/support/servers.py)
pytestmark = pytest.mark.usefixtures("database_url")


def user_count(app) -> int:  # type: ignore[no-untyped-def]
    with app.extensions["db"].connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.users)).scalar_one())


def test_register_login_answers_both_documents(client: FlaskClient, auth: Auth) -> None:
    user_id = auth.register()
    body = auth.login()
    assert body["message"] == "Login successful"
    assert body["user_id"] == user_id
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"].count(".") == 2 and body["refresh_token"].count(".") == 2


def test_first_user_is_admin_second_is_not(client: FlaskClient, auth: Auth) -> None:
    first = auth.headers("root")
    second = auth.headers("bob")
    assert client.get("/api/v1/user/profile", headers=first).get_json()["user"]["role"] == "admin"
    assert client.get("/api/v1/user/profile", headers=second).get_json()["user"]["role"] == "user"


def test_password_is_stored_as_argon2(app, auth: Auth) -> None:  # type: ignore[no-untyped-def]
    auth.register(password="s3cret-password")
    with app.extensions["db"].connect() as conn:
        stored = conn.execute(select(schema.users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and "s3cret-password" not in stored


def test_session_unauthenticated_and_authenticated(client: FlaskClient, auth: Auth) -> None:
    anon = client.get("/api/auth/session")
    assert anon.status_code == 200
    assert anon.get_json()["is_authenticated"] is False
    headers = auth.headers()
    body = client.get("/api/auth/session", headers=headers).get_json()
    assert body["is_authenticated"] is True and body["username"] == "alice"
    assert body["expires_at"][-6] in "+-"  # ISO 8601 with offset


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "al", "email": "a@b.io", "password": "longenough"}, "username"),
        ({"username": "alice", "email": "not-an-email", "password": "longenough"}, "email"),
        ({"username": "alice", "email": "a@b.io", "password": "short"}, "password"),
        ({"username": "alice", "email": "a@b.io"}, None),
        ({"username": 5, "email": "a@b.io", "password": "longenough"}, "username"),
        ({"username": "alice", "email": "a@b.io", "password": "longenough", "role": "admin"}, None),
        ({"username": "ali\u200bce", "email": "a@b.io", "password": "longenough"}, "username"),
        ({"username": "ali ce", "email": "a@b.io", "password": "longenough"}, "username"),
        ({"username": "ali\x00ce", "email": "a@b.io", "password": "longenough"}, "username"),
    ],
)
def test_register_rejects_bad_input_and_stores_nothing(
    app,
    client: FlaskClient,
    payload: dict,
    field: str | None,  # type: ignore[no-untyped-def,type-arg]
) -> None:
    response = client.post("/api/auth/register", json=payload)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    if field:
        assert error["details"]["field"] == field
    assert user_count(app) == 0


def test_unicode_usernames_normalize_and_collide(client: FlaskClient, auth: Auth) -> None:
    auth.register("Zoë")
    # NFKC + casefold: the decomposed and upper-case spellings are the same account.
    taken = client.post(
        "/api/auth/register",
        json={"username": "ZOE\u0308", "email": "other@example.org", "password": "longenough"},
    )
    assert taken.status_code == 409
    assert auth.login("zoë")["user_id"] == 1


def test_duplicate_registration_is_conflict(app, client: FlaskClient, auth: Auth) -> None:  # type: ignore[no-untyped-def]
    auth.register("alice")
    again = client.post(
        "/api/auth/register",
        json={"username": "ALICE", "email": "new@example.org", "password": "longenough"},
    )
    assert again.status_code == 409 and again.get_json()["error"]["details"]["field"] == "username"
    same_mail = client.post(
        "/api/auth/register",
        json={"username": "alice2", "email": "alice@example.org", "password": "longenough"},
    )
    assert (
        same_mail.status_code == 409
        and same_mail.get_json()["error"]["details"]["field"] == "email"
    )
    assert user_count(app) == 1


def test_wrong_password_and_unknown_user_look_the_same(client: FlaskClient, auth: Auth) -> None:
    auth.register()
    wrong = client.post("/api/auth/login", json={"username": "alice", "password": "nope-nope"})
    unknown = client.post("/api/auth/login", json={"username": "mallory", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json()["error"]["message"] == unknown.get_json()["error"]["message"]


def test_refresh_rotates_and_reuse_revokes_the_family(client: FlaskClient, auth: Auth) -> None:
    auth.register()
    first = auth.login()
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.get_json()
    assert second["token_type"] == "bearer" and second["refresh_token"] != first["refresh_token"]
    # The new access token works.
    me = client.get(
        "/api/v1/user/profile", headers={"Authorization": f"Bearer {second['access_token']}"}
    )
    assert me.status_code == 200
    # Replaying the spent token is refused and kills the rotated one too.
    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    after = client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401


def test_access_token_is_not_a_refresh_token(client: FlaskClient, auth: Auth) -> None:
    auth.register()
    tokens = auth.login()
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert response.status_code == 401


def test_logout_revokes_the_presented_token(client: FlaskClient, auth: Auth) -> None:
    auth.register()
    tokens = auth.login()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    out = client.post(
        "/api/auth/logout", headers=headers, json={"refresh_token": tokens["refresh_token"]}
    )
    assert out.status_code == 200 and out.get_json()["message"] == "Logged out successfully"
    assert client.get("/api/v1/user/profile", headers=headers).status_code == 401
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        ).status_code
        == 401
    )


@pytest.mark.parametrize(
    "header",
    ["Bearer not.a.jwt", "Bearer ", "Basic abc", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."],
)
def test_bad_tokens_are_unauthorized(client: FlaskClient, header: str) -> None:
    response = client.get("/api/v1/user/profile", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "UNAUTHORIZED"


def test_tampered_token_is_refused(client: FlaskClient, auth: Auth) -> None:
    auth.register()
    token = auth.login()["access_token"]
    head, payload, sig = token.split(".")
    forged = f"{head}.{payload}.{sig[::-1]}"
    response = client.get("/api/v1/user/profile", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_expired_token_is_refused(home, make_app) -> None:  # type: ignore[no-untyped-def]

    app = make_app({"home": home, "access_token_ttl": 1})
    client = app.test_client()
    Auth(client).register()
    token = Auth(client).login()["access_token"]
    time.sleep(2.1)
    response = client.get("/api/v1/user/profile", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "Token has expired"


def test_jwt_secret_is_generated_and_private(app, home) -> None:  # type: ignore[no-untyped-def]
    secret = home / "jwt_secret"
    assert secret.exists()
    assert secret.stat().st_mode & 0o777 == 0o600
    assert len(secret.read_text()) >= 48
    assert app.config["JWT_SECRET_KEY"] == secret.read_text()


def test_tokens_survive_a_restart_with_the_same_home(home, make_app) -> None:  # type: ignore[no-untyped-def]

    first = make_app({"home": home})
    Auth(first.test_client()).register()
    token = Auth(first.test_client()).login()["access_token"]
    second = make_app({"home": home})
    response = second.test_client().get(
        "/api/v1/user/profile", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200

"""Two API instances on one PostgreSQL and one real Redis (BRIDGE_REDIS_URL): rate limits,
the answer cache, signing nonces, revoked tokens and /ws pushes are shared."""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.signing import sign
from local_api.accounts.request_signing import derive
from local_api.generation import cache
from local_api.storage import shared_state

API = "/api/v1"
SHARED = {"jwt_secret": "j" * 40, "secret_key": "s" * 40}  # what instances must agree on


@pytest.fixture
def pair(postgres_url: str, redis_url: str, make_app: Callable[..., Flask],
         tmp_path: Path) -> tuple[FlaskClient, FlaskClient]:
    def instance(name: str) -> Flask:
        return make_app({
            "home": tmp_path / name, "database_url": postgres_url, "redis_url": redis_url,
            "tier_limits": {"free": "5/minute", "pro": "6/minute", "enterprise": "8/minute"},
            **SHARED,
        })

    return instance("a").test_client(), instance("b").test_client()


def _login(client: FlaskClient, username: str = "alice") -> dict[str, Any]:
    body = {"username": username, "email": f"{username}@example.org",
            "password": "correct horse"}
    client.post("/api/auth/register", json=body)
    login = client.post(f"{API}/auth/login",
                        json={"username": username, "password": "correct horse"})
    return dict(login.get_json())


def test_settings_point_limits_and_cache_at_redis_unless_overridden(pair: Any) -> None:
    a, _ = pair
    settings = a.application.config["SETTINGS"]
    assert settings.ratelimit_storage == settings.redis_url == settings.cache_storage
    assert settings.with_overrides(cache_storage_uri="null://").cache_storage == "null://"
    assert a.application.extensions["answer_cache"].config["CACHE_TYPE"] == "RedisCache"


def test_a_rate_limit_is_counted_across_instances(pair: Any) -> None:
    a, b = pair
    headers = {"Authorization": f"Bearer {_login(a)['access_token']}"}
    codes = [(a if i % 2 else b).get(f"{API}/auth/session", headers=headers).status_code
             for i in range(6)]
    assert codes == [200] * 5 + [429]  # 5/minute in all, not 5 on each instance


def test_a_token_revoked_on_one_is_refused_by_the_other(pair: Any) -> None:
    a, b = pair
    tokens = _login(a)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert b.get(f"{API}/auth/session", headers=headers).status_code == 200
    assert a.post(f"{API}/auth/logout", headers=headers,
                  json={"refresh_token": tokens["refresh_token"]}).status_code in (200, 204)
    assert b.get(f"{API}/auth/session", headers=headers).status_code == 401


def test_a_signed_request_is_accepted_once_across_instances(pair: Any) -> None:
    a, b = pair
    headers = {"Authorization": f"Bearer {_login(a)['access_token']}"}
    key = a.post(f"{API}/auth/api-keys", headers=headers, json={"name": "signer"}).get_json()
    assert b.get(f"{API}/auth/session",
                 headers={"Authorization": f"Bearer {key['key']}"}).status_code == 200
    path = f"{API}/auth/session"
    once = sign(derive(key["key"]), "GET", path, key_id=key["id"])
    assert a.get(path, headers=once).status_code == 200
    replay = b.get(path, headers=once)
    assert replay.status_code == 401
    assert "Replayed" in replay.get_json()["error"]["message"]


def test_a_cached_answer_is_shared(pair: Any) -> None:
    a, b = pair
    with a.application.app_context():
        cache.put("answer:shared-test", {"text": "Paris"})
    with b.application.app_context():
        found = cache.get("answer:shared-test")
    assert found is not None and found[0] == {"text": "Paris"} and found[1] > 0


def test_ws_pushes_reach_subscribers_of_every_instance(pair: Any) -> None:
    a, b = pair
    with b.application.app_context():
        other = b.application.extensions["events"]
    with other.subscribe(7) as inbox, other.subscribe(8) as stranger:
        with a.application.app_context():
            a.application.extensions["events"].publish(
                "chat_update", {"conversation_id": "c1"}, user_id=7)
        assert inbox.get(timeout=5) == ("chat_update", {"conversation_id": "c1"})
        with pytest.raises(queue.Empty):
            stranger.get(timeout=0.3)  # another user's socket gets nothing


def test_nonces_expire(pair: Any) -> None:
    a, _ = pair
    with a.application.app_context():
        assert shared_state.first_use("k", "n" * 16, 60)
        assert not shared_state.first_use("k", "n" * 16, 60)
        ttl = shared_state.client().ttl(f"{shared_state.NONCE_PREFIX}k:{'n' * 16}")
    assert 0 < ttl <= 60

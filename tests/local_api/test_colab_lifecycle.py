"""Colab through the API against the strict stand-ins: the loopback sign-in, the refusals the
real control plane answers, the pre-flight, and a runtime Colab takes back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.config import DEFAULT_MODEL_ID
from bridge.router import Router
from colab_runtime.worker import WorkerServer, create_worker_app
from local_api.remote.workers import Attached, build_backend
from tests.support.connect import (
    CONNECT,
    RUNTIME,
    SECRET,
    WORKER_ANSWER,
    admin,
    ask,
    rows,
    worker_entry,
)
from tests.support.fakes import FakeBackend
from tests.support.remote import Google, sign_in


@pytest.fixture
def gpu() -> Iterator[FakeBackend]:
    backend = FakeBackend("gpu", default=WORKER_ANSWER, models=[DEFAULT_MODEL_ID])
    yield backend
    backend.release()


@pytest.fixture
def worker(gpu: FakeBackend) -> Iterator[WorkerServer]:
    server = WorkerServer(create_worker_app(gpu, SECRET, runtime_info=RUNTIME)).start()
    yield server
    server.stop()


@pytest.fixture
def local() -> FakeBackend:
    return FakeBackend("local", default="Paris, answered locally.")


@pytest.fixture
def build(make_app: Callable[..., Flask], home: Path, local: FakeBackend, google: Google  # noqa: F811
          ) -> Callable[..., Flask]:
    def app(**settings: Any) -> Flask:
        return make_app({"home": home, **settings}, router=Router(local),
                        google=google.endpoints)

    return app


def signed_in(client: FlaskClient, google: Google, **extra: Any) -> tuple[dict[str, str], dict]:
    headers = admin(client)
    body = {"credentials": google.credentials, "tunnel": "none", **extra}
    sign_in(client, client.post(CONNECT, headers=headers, json=body).get_json()["auth_url"])
    return headers, body


def test_the_redirect_is_loopback_on_the_service_port_whatever_host_was_used(
    build: Callable[..., Flask], google: Google
) -> None:
    client = build(port=5123, allowed_hosts="my-laptop.local").test_client()  # a LAN name
    headers = admin(client)
    body = {"credentials": google.credentials, "tunnel": "none"}
    answer = client.post(CONNECT, headers=headers, json=body,
                         base_url="http://my-laptop.local:8080").get_json()
    assert answer["redirect_uri"] == "http://127.0.0.1:5123/api/v1/system/colab/callback"
    query = parse_qs(urlsplit(answer["auth_url"]).query)
    assert query["redirect_uri"] == [answer["redirect_uri"]]


def test_an_expired_grant_asks_for_consent_again_and_says_why(
    build: Callable[..., Flask], google: Google
) -> None:
    client = build().test_client()
    headers, body = signed_in(client, google)
    google.oauth.tokens.access.clear()
    google.oauth.refresh_tokens.clear()  # a test user's 7 days are over
    answer = client.post(CONNECT, headers=headers, json=body).get_json()
    assert answer["status"] == "authorization_required"
    assert "invalid_grant" in answer["reason"] and "7 days" in answer["reason"]


@pytest.mark.parametrize(("setup", "status", "code", "words"), [
    ({"outcome": "QUOTA_EXCEEDED_USAGE_TIME"}, 429, "COLAB_QUOTA_EXCEEDED", "usage time"),
    ({"outcome": "DENYLISTED"}, 403, "COLAB_DENIED", "DENYLISTED"),
    ({"unavailable": {"T4"}}, 503, "COLAB_ACCELERATOR_UNAVAILABLE", "try another"),
    ({"not_entitled": {"T4"}}, 403, "COLAB_NOT_ENTITLED", "not entitled"),
])
def test_colab_refusals_keep_their_own_codes(
    build: Callable[..., Flask], google: Google, setup: dict[str, Any], status: int, code: str,
    words: str, home: Path,
) -> None:
    client = build().test_client()
    headers, body = signed_in(client, google)
    for key, value in setup.items():
        setattr(google.colab, key, value)
    answer = client.post(CONNECT, headers=headers, json=body)
    error = answer.get_json()["error"]
    assert (answer.status_code, error["code"]) == (status, code)
    assert words in error["message"]
    assert google.colab.assignments == {} and rows(home, "SELECT name FROM workers") == []


def test_no_gpu_of_that_kind_offers_the_accounts_other_eligible_accelerators(
    build: Callable[..., Flask], google: Google
) -> None:
    client = build().test_client()
    headers, body = signed_in(client, google)
    google.colab.unavailable = {"T4"}
    google.colab.eligible = {"VARIANT_GPU": ["T4", "L4", "A100"], "VARIANT_TPU": ["V6E1"]}
    error = client.post(CONNECT, headers=headers, json=body).get_json()["error"]
    assert error["code"] == "COLAB_ACCELERATOR_UNAVAILABLE"
    assert "this account may also use L4, A100" in error["message"]
    assert error["details"]["alternatives"] == ["L4", "A100"]  # not H100/G4: not eligible
    assert error["details"]["alternatives_checked"] is True
    assert google.colab.user_info_calls == 1


def test_a_failed_pre_flight_releases_the_runtime_and_says_why(
    build: Callable[..., Flask], google: Google
) -> None:
    client = build().test_client()
    headers, body = signed_in(client, google)
    google.colab.keepalive_refusal = 403
    answer = client.post(CONNECT, headers=headers, json=body)
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert "first keep-alive" in error["message"] and "released" in error["message"]
    assert google.colab.assignments == {}
    assert any("/tun/m/unassign/" in path for _, path in google.colab.requests)


def test_a_proxy_that_refuses_even_a_renewed_token_fails_the_connect_and_releases(
    build: Callable[..., Flask], google: Google, home: Path
) -> None:
    client = build().test_client()
    headers, body = signed_in(client, google, package_spec="compute-bridge==0.1.0")
    google.colab.stale_tokens = 10  # every token the control plane hands out is stale
    answer = client.post(CONNECT, headers=headers, json=body)
    assert answer.status_code == 503, answer.get_json()
    error = answer.get_json()["error"]
    assert "refused its token on the kernel start (404)" in error["message"]
    assert "again with a token just renewed" in error["message"]
    assert error["details"] == {"reason": "proxy_token", "upstream_status": 404}
    assert not any(token in answer.get_data(as_text=True) for token in google.colab.stale)
    assert google.colab.assignments == {}  # released, not left billed
    assert rows(home, "SELECT name FROM workers") == []


def attach_colab_worker(app: Flask, google: Google, worker_url: str, *,
                        preflight: bool = False) -> None:
    """A Colab worker attached as a connect leaves it (the launch itself: test_chain.py);
    ``preflight``: with the first keep-alive and the runtime's start stored, as connect does."""
    client = app.test_client()
    signed_in(client, google)
    with app.app_context():
        from local_api.remote import google_account

        credentials = google_account.stored_credentials(1)
        assert credentials is not None
        colab_client = google_account.colab_client(credentials)
        a = colab_client.assign("T4", "GPU")
        colab = {"endpoint": a.endpoint, "accelerator": "T4", "variant": "GPU",
                 "notebook_hash": colab_client.notebook_hash, "proxy_url": a.proxy_url,
                 "fit": a.fit}
        keeper = google_account.keeper(colab_client, colab, a)
        if preflight:
            keeper.preflight()
            colab["runtime_started"] = keeper.started_at
        backend = build_backend("colab-t4-1", "worker", worker_url, SECRET, 10)
        app.extensions["remote"].attach(Attached(
            "colab-t4-1", "worker", worker_url, backend,
            {"mode": "credentials", "launched": False, "colab": colab}, client=colab_client,
            keepalive=keeper), SECRET, 1)


def test_a_reclaimed_runtime_is_detached_told_and_requests_fall_back(
    build: Callable[..., Flask], google: Google, worker: Any, home: Path  # noqa: F811
) -> None:
    app = build()
    attach_colab_worker(app, google, worker.url)
    client = app.test_client()
    headers = admin(client)
    assert ask(client, headers)["backend"] == "colab-t4-1"
    entry = worker_entry(client, headers, "colab-t4-1")
    assert entry["limits"]["idle_reclaim"] == "PT1H30M"  # the runtime's fit, not a constant
    assert entry["keepalive"]["state"] == "alive"
    keeper = app.extensions["remote"].get("colab-t4-1").keepalive
    google.colab.reclaim("gpu-t4-s-1")  # Colab takes it back server-side
    keeper.tick()
    assert keeper.state == "gone"
    status = client.get("/api/v1/system/status", headers=headers).get_json()
    assert all(b["name"] != "colab-t4-1" for b in status["backends"])
    (lost,) = status["lost"]
    assert lost["worker"] == "colab-t4-1" and "no longer lists" in lost["reason"]
    assert ask(client, headers)["backend"] == "local"
    assert rows(home, "SELECT name FROM workers") == []
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'bridge_colab_runtimes_lost_total{reason="reclaimed"} 1.0' in metrics


def test_a_restarted_runtime_is_lost_as_restarted_and_requests_fall_back(
    build: Callable[..., Flask], google: Google, worker: Any, home: Path  # noqa: F811
) -> None:
    app = build()
    attach_colab_worker(app, google, worker.url)
    client = app.test_client()
    headers = admin(client)
    keeper = app.extensions["remote"].get("colab-t4-1").keepalive
    keeper.tick()  # sees the runtime's server as it is
    assert keeper.state == "alive" and keeper.started_at
    google.colab.restart("gpu-t4-s-1")  # same endpoint, still listed: a new VM
    worker.stop()  # the worker did not survive it
    keeper.tick()
    assert keeper.state == "gone"
    assert "gpu-t4-s-1" in google.colab.assignments
    status = client.get("/api/v1/system/status", headers=headers).get_json()
    (lost,) = status["lost"]
    assert (lost["worker"], lost["kind"]) == ("colab-t4-1", "restarted")
    assert "restarted" in lost["reason"]
    assert all(b["name"] != "colab-t4-1" for b in status["backends"])
    assert ask(client, headers)["backend"] == "local"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'bridge_colab_runtimes_lost_total{reason="restarted"} 1.0' in metrics


def test_a_reclaim_is_noticed_on_the_keepalive_clock_within_two_intervals(
    make_app: Callable[..., Flask], home: Path, local: FakeBackend, google: Google,
    worker: Any,
) -> None:
    interval = 1.0  # BRIDGE_COLAB_KEEPALIVE_INTERVAL; nobody calls tick() here
    where = google.endpoints
    app = make_app({"home": home, "google_auth_uri": where.auth_uri,
                    "google_token_uri": where.token_uri, "colab_url": where.colab_url,
                    "colab_api_url": where.colab_api_url, "google_drive_url": where.drive_root_url,
                    "colab_keepalive_interval": interval}, router=Router(local))
    attach_colab_worker(app, google, worker.url)
    client = app.test_client()
    headers = admin(client)
    assert ask(client, headers)["backend"] == "colab-t4-1"
    client.get("/api/v1/system/status", headers=headers)  # its first call imports torch (~2 s)
    deadline = time.monotonic() + 4 * interval
    while len(google.colab.keepalives) < 2:  # the keep-alive runs on its own timer
        assert time.monotonic() < deadline, google.colab.keepalives
        time.sleep(0.05)
    google.colab.reclaim("gpu-t4-s-1")
    worker.stop()  # the VM went with it
    reclaimed, lost = time.monotonic(), []
    backends = {ask(client, headers)["backend"]}  # answered meanwhile, locally
    while not lost:
        answer = client.get("/api/v1/system/status", headers=headers)
        assert answer.status_code == 200, answer.get_json()
        lost = answer.get_json()["lost"]
        assert time.monotonic() - reclaimed <= 2 * interval, "the reclaim went unnoticed"
        time.sleep(0.05)
    assert backends == {"local"}
    assert lost[0]["kind"] == "reclaimed" and lost[0]["worker"] == "colab-t4-1"
    assert ask(client, headers)["backend"] == "local"


def test_every_google_endpoint_is_a_setting(make_app: Callable[..., Flask], home: Path) -> None:
    from bridge.config import Settings
    from local_api.remote import google_account

    env = {"BRIDGE_GOOGLE_AUTH_URI": "http://g/auth", "BRIDGE_GOOGLE_TOKEN_URI": "http://g/token",
           "BRIDGE_COLAB_URL": "http://c", "BRIDGE_COLAB_API_URL": "http://c-api",
           "BRIDGE_GOOGLE_DRIVE_URL": "http://d/", "BRIDGE_COLAB_IDLE_LIMIT": "120",
           "BRIDGE_COLAB_KEEPALIVE_INTERVAL": "0.5"}
    settings = Settings.from_env(env, home=home)
    assert Settings().colab_url == "https://colab.research.google.com"
    names = ("google_auth_uri", "google_token_uri", "colab_url", "colab_api_url",
             "google_drive_url", "colab_idle_limit", "colab_keepalive_interval")
    app = make_app({"home": home, **{n: getattr(settings, n) for n in names}})
    with app.app_context():
        where = google_account.endpoints()
    assert (where.auth_uri, where.token_uri, where.colab_url, where.colab_api_url,
            where.drive_root_url, where.idle_limit, where.keepalive_interval) == (
        "http://g/auth", "http://g/token", "http://c", "http://c-api", "http://d/", 120.0, 0.5)


def test_a_runtime_restarted_while_the_service_was_down_is_lost_when_it_comes_back(
    build: Callable[..., Flask], google: Google, worker: Any, home: Path  # noqa: F811
) -> None:
    first = build()
    attach_colab_worker(first, google, worker.url, preflight=True)
    first.extensions["remote"].get("colab-t4-1").keepalive.stop()  # the service stops
    google.colab.restart("gpu-t4-s-1")  # meanwhile Colab gives the endpoint a new VM
    worker.stop()
    again = build()  # same home: the worker comes back from the database
    keeper = again.extensions["remote"].get("colab-t4-1").keepalive
    assert keeper is not None and keeper.started_at  # what the connect saw
    keeper.tick()
    assert (keeper.state, keeper.gone_kind) == ("gone", "restarted")
    client = again.test_client()
    status = client.get("/api/v1/system/status", headers=admin(client)).get_json()
    assert [(x["worker"], x["kind"]) for x in status["lost"]] == [("colab-t4-1", "restarted")]

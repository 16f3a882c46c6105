"""POST/DELETE /system/colab/connect through the real app: workers, OpenAI servers, Colab."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.config import DEFAULT_MODEL_ID
from bridge.router import Router
from colab_runtime.worker import WorkerServer, create_worker_app
from tests.support.app import Auth, LiveServer
from tests.support.connect import (
    CONNECT,
    RUNTIME,
    SECRET,
    WORKER_ANSWER,
    admin,
    allow_inserts,
    ask,
    execute,
    refuse_inserts,
    rows,
    worker_entry,
)
from tests.support.fakes import FakeBackend
from tests.support.remote import Google, sign_in, stored_runtime

pytestmark = pytest.mark.usefixtures("connect_database")  # SQLite and a real PostgreSQL


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
    def app(**router_options: Any) -> Flask:
        router = Router(local, **router_options)
        return make_app({"home": home}, router=router, google=google.endpoints)

    return app


@pytest.fixture
def api(build: Callable[..., Flask]) -> FlaskClient:
    return build().test_client()


def test_attach_a_running_worker_route_to_it_and_detach(
    api: FlaskClient, worker: WorkerServer, home: Path, local: FakeBackend
) -> None:
    headers = admin(api)
    answer = api.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "gpu1"})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "connected" and body["worker"] == "gpu1"
    assert body["runtime_info"] == {"type": "colab", "gpu": "Tesla T4", "device": "cuda",
                                    "memory": 15360 * 2**20}
    assert body["models"] == [DEFAULT_MODEL_ID] and SECRET not in answer.get_data(as_text=True)

    reply = ask(api, headers)
    assert (reply["completion"], reply["backend"]) == (WORKER_ANSWER, "gpu1")
    entry = worker_entry(api, headers, "gpu1")
    assert entry["healthy"] is True and entry["kind"] == "worker" and entry["latency_ms"] >= 0
    assert entry["runtime_info"]["gpu"] == "Tesla T4"
    assert entry["time_left"] in ("PT12H", "PT11H59M59S")  # a Colab runtime: ~12 h cap
    assert worker_entry(api, headers, "local")["kind"] == "local"

    (stored,) = rows(home, "SELECT name, kind, url, secret_enc FROM workers")
    assert stored[:3] == ("gpu1", "worker", worker.url) and SECRET not in stored[3]
    events = rows(home, "SELECT event, outcome, details FROM audit_log WHERE event LIKE 'remote%'")
    assert [(e[0], e[1]) for e in events] == [("remote_connect", "success")]
    assert SECRET not in json.dumps([e[2] for e in events])

    gone = api.delete(CONNECT, headers=headers, json={"name": "gpu1"})
    assert gone.status_code == 200, gone.get_json()
    assert gone.get_json()["status"] == "disconnected"
    assert rows(home, "SELECT name FROM workers") == []
    assert ask(api, headers)["backend"] == "local"
    names = [b["name"] for b in api.get("/api/v1/system/status", headers=headers)
             .get_json()["backends"]]
    assert names == ["local"]
    assert api.delete(CONNECT, headers=headers).status_code == 404  # nothing left to detach


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({}, 400, "VALIDATION_ERROR", None),
        ({"worker_url": "URL", "runtime_url": "http://127.0.0.1:1"}, 400, "VALIDATION_ERROR", None),
        ({"worker_url": "URL"}, 400, "VALIDATION_ERROR", "worker_secret"),
        ({"worker_url": "URL", "worker_secret": "short"}, 400, "VALIDATION_ERROR", "worker_secret"),
        ({"worker_url": "URL", "worker_secret": "x" * 20}, 400, "VALIDATION_ERROR",
         "worker_secret"),
        ({"worker_url": "ftp://h", "worker_secret": SECRET}, 400, "VALIDATION_ERROR", "worker_url"),
        ({"worker_url": "URL", "worker_secret": SECRET, "token": "t"}, 400, "VALIDATION_ERROR",
         "token"),
        ({"runtime_url": "http://127.0.0.1:1", "tunnel": "ngrok"}, 400, "VALIDATION_ERROR",
         "ngrok_token"),
        ({"worker_url": "URL?token=x", "worker_secret": SECRET}, 400, "VALIDATION_ERROR",
         "worker_url"),  # would be probed as /?token=x/health and called a wrong secret
        ({"runtime_url": "http://127.0.0.1:1/lab#frag", "tunnel": "none"}, 400,
         "VALIDATION_ERROR", "runtime_url"),
        ({"openai_base_url": "http://127.0.0.1:1/v1?key=k"}, 400, "VALIDATION_ERROR",
         "openai_base_url"),
        ({"base_url": "http://127.0.0.1:1/v1#x"}, 400, "VALIDATION_ERROR", "base_url"),
        ({"runtime_url": "http://127.0.0.1:1", "package_spec": "-e ."}, 400,
         "VALIDATION_ERROR", "package_spec"),
        ({"runtime_url": "http://127.0.0.1:1", "package_spec": "x --index-url http://evil"},
         400, "VALIDATION_ERROR", "package_spec"),
        ({"runtime_url": "http://u:p@127.0.0.1:1", "token": "t"}, 400, "VALIDATION_ERROR",
         "runtime_url"),
        ({"worker_url": "URL", "worker_secret": SECRET, "package_spec": "x"}, 400,
         "VALIDATION_ERROR", "package_spec"),
        ({"worker_url": "URL", "worker_secret": SECRET, "name": "bad name"}, 400,
         "VALIDATION_ERROR", "name"),
        ({"worker_url": "URL", "worker_secret": SECRET, "name": "local"}, 409, "CONFLICT", "name"),
        ({"worker_url": "URL", "worker_secret": SECRET, "surprise": 1}, 400, "VALIDATION_ERROR",
         None),
        ({"worker_url": "FOREIGN", "worker_secret": SECRET}, 400, "VALIDATION_ERROR",
         "worker_url"),
        ({"worker_url": "http://127.0.0.1:9", "worker_secret": SECRET}, 503,
         "BACKEND_UNAVAILABLE", None),
        ({"openai_base_url": "https://\u00fdD\u00f4D\U000bebf1\u00e7(\u00df"}, 400,
         "VALIDATION_ERROR", "openai_base_url"),  # found by schemathesis: bad IDNA host
    ],
)
def test_bad_connects_are_refused_and_store_nothing(
    api: FlaskClient, worker: WorkerServer, home: Path, body: dict[str, Any], status: int,
    code: str, field: str | None,
) -> None:
    headers = admin(api)
    with LiveServer(Flask("foreign")) as not_a_worker:
        body = {k: (worker.url + v[3:] if isinstance(v, str) and v.startswith("URL")
                    else not_a_worker.url if v == "FOREIGN" else v) for k, v in body.items()}
        answer = api.post(CONNECT, headers=headers, json=body)
    error = answer.get_json()["error"]
    assert (answer.status_code, error["code"]) == (status, code), error
    if field is not None:
        assert error["details"]["field"] == field, error
    assert rows(home, "SELECT name FROM workers") == []
    assert worker_entry(api, headers, "local")  # only local remains
    assert len(api.get("/api/v1/system/status", headers=headers).get_json()["backends"]) == 1


def test_connect_is_for_admins_only(api: FlaskClient, worker: WorkerServer) -> None:
    admin(api)
    user = Auth(api).headers("bob")
    body = {"worker_url": worker.url, "worker_secret": SECRET}
    assert api.post(CONNECT, json=body).status_code == 401
    answer = api.post(CONNECT, headers=user, json=body)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (403, "FORBIDDEN")
    assert api.delete(CONNECT, headers=user).status_code == 403


def test_an_openai_compatible_server_is_attached_by_base_url(
    api: FlaskClient, make_app: Callable[..., Flask], tmp_path: Path, model_store: Any
) -> None:
    served = FakeBackend("local", default="Bonjour from the other server.")
    other = make_app({"home": tmp_path / "other", "database_url": ""},  # its own SQLite
                     router=Router(served), store=model_store)
    with LiveServer(other) as server:
        other_auth = Auth(other.test_client())
        token = other_auth.headers("remote")["Authorization"].split()[1]
        headers = admin(api)
        answer = api.post(CONNECT, headers=headers, json={
            "base_url": server.url, "api_key": token, "name": "vllm"})
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["kind"] == "openai"
        assert DEFAULT_MODEL_ID in answer.get_json()["models"]
        reply = ask(api, headers, parameters={"temperature": 0})
        assert (reply["completion"], reply["backend"]) == ("Bonjour from the other server.", "vllm")
        assert token not in api.get("/api/v1/system/status", headers=headers).get_data(as_text=True)
        bad = api.post(CONNECT, headers=headers, json={
            "openai_base_url": server.url, "api_key": "wrong", "name": "other"})
        assert bad.status_code == 503 and "API key" in bad.get_json()["error"]["message"]


def test_attached_workers_come_back_when_the_app_restarts(
    build: Callable[..., Flask], worker: WorkerServer, home: Path
) -> None:
    first = build().test_client()
    headers = admin(first)
    assert first.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "gpu1"}).status_code == 200
    again = build().test_client()  # same home: same database and secret key
    deadline = time.monotonic() + 10
    while not worker_entry(again, headers, "gpu1")["healthy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ask(again, headers)["backend"] == "gpu1"  # the decrypted secret still signs
    assert again.delete(CONNECT, headers=headers).get_json()["worker"] == "gpu1"


def test_a_hanging_worker_times_out_and_the_stream_completes_locally(
    api: FlaskClient, worker: WorkerServer, gpu: FakeBackend, local: FakeBackend
) -> None:
    headers = admin(api)
    api.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "gpu1", "read_timeout": 1})
    gpu.hang_after = 2
    local.default = WORKER_ANSWER
    answer = api.post("/api/v1/chat/completion", headers=headers,
                      json={"prompt": "Capital of France?", "stream": True})
    lines = [json.loads(line) for line in answer.get_data(as_text=True).splitlines()]
    switched = [x for x in lines if x.get("event") == "backend_switched"]
    assert len(switched) == 1 and switched[0]["from"] == "gpu1" and "timed out" in \
        switched[0]["reason"]
    final = lines[-1]
    assert final["is_final"] and final["backend"] == "local" and final["completion"] == \
        WORKER_ANSWER
    assert local.history[-1].prefill == "Paris, answered"


def test_a_worker_that_goes_away_and_comes_back_closes_its_circuit(
    build: Callable[..., Flask], worker: WorkerServer, gpu: FakeBackend
) -> None:
    client = build(failure_threshold=1, cooldown=0.2).test_client()
    headers = admin(client)
    client.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "gpu1"})
    port = worker.port
    worker.stop()
    assert ask(client, headers)["backend"] == "local"  # failed before its first token: invisible
    entry = worker_entry(client, headers, "gpu1")
    assert (entry["healthy"], entry["circuit"]) == (False, "open")
    back = WorkerServer(create_worker_app(gpu, SECRET, runtime_info=RUNTIME), port=port).start()
    try:
        time.sleep(0.25)  # the cooldown
        client.application.extensions["compute"].router.probe_all()
        entry = worker_entry(client, headers, "gpu1")
        assert (entry["healthy"], entry["circuit"]) == (True, "closed")
        assert ask(client, headers)["backend"] == "gpu1"
    finally:
        back.stop()


def test_colab_sign_in_then_manual_notebook_upload(
    api: FlaskClient, google: Google, home: Path  # noqa: F811
) -> None:
    headers = admin(api)
    body = {"credentials": google.credentials, "manual": True}
    first = api.post(CONNECT, headers=headers, json=body).get_json()
    assert first["status"] == "authorization_required", first
    assert first["auth_url"].startswith(google.endpoints.auth_uri + "?")
    (pending,) = rows(home, "SELECT pending, credentials_enc FROM google_accounts")
    assert google.oauth.client_secret not in pending[0] and pending[1] == ""

    assert sign_in(api, first["auth_url"])["status"] == "authorized"
    (stored,) = rows(home, "SELECT credentials_enc, pending FROM google_accounts")
    (refresh,) = google.oauth.refresh_tokens
    assert refresh not in stored[0] and stored[1] is None  # encrypted; the pending flow is spent

    uploaded = api.post(CONNECT, headers=headers, json=body).get_json()
    assert uploaded["status"] == "notebook_uploaded", uploaded
    (file_id,) = google.drive.files
    assert uploaded["colab_url"] == f"https://colab.research.google.com/drive/{file_id}"
    notebook = json.loads(google.drive.files[file_id]["content"])
    assert "parameters" in notebook["cells"][1]["metadata"]["tags"]
    events = [r[0] for r in rows(home, "SELECT event FROM audit_log")]
    assert "google_sign_in" in events
    details = [r[0] for r in rows(home, "SELECT details FROM audit_log")]
    assert google.oauth.client_secret not in json.dumps(details)


def test_a_callback_that_is_forged_or_refused_stores_nothing(
    api: FlaskClient, home: Path
) -> None:
    assert api.get("/api/v1/system/colab/callback?code=c&state=forged").status_code == 403
    assert api.get("/api/v1/system/colab/callback?error=access_denied").status_code == 403
    assert api.get("/api/v1/system/colab/callback?state=s").status_code == 400
    assert rows(home, "SELECT user_id FROM google_accounts") == []


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        ((412, "{}"), 409, "COLAB_TOO_MANY_ASSIGNMENTS"),
        ((500, "{}"), 503, "BACKEND_UNAVAILABLE"),
        ((200, ")]}'\n{not json"), 503, "BACKEND_UNAVAILABLE"),
    ],
)
def test_control_plane_failures_surface_in_the_connect_answer(
    api: FlaskClient, google: Google, failure: tuple[int, str], status: int, code: str,  # noqa: F811
    home: Path,
) -> None:
    headers = admin(api)
    body = {"credentials": google.credentials, "accelerator": "T4", "tunnel": "none"}
    sign_in(api, api.post(CONNECT, headers=headers, json=body).get_json()["auth_url"])
    google.colab.fail_next.append(failure)
    answer = api.post(CONNECT, headers=headers, json=body)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (status, code)
    assert rows(home, "SELECT name FROM workers") == [] and google.colab.assignments == {}


def test_revoked_google_access_asks_for_consent_again(
    api: FlaskClient, google: Google, home: Path  # noqa: F811
) -> None:
    headers = admin(api)
    body = {"credentials": google.credentials, "tunnel": "none"}
    sign_in(api, api.post(CONNECT, headers=headers, json=body).get_json()["auth_url"])
    google.oauth.tokens.access.clear()
    google.oauth.refresh_tokens.clear()  # the user revoked access in their Google account
    answer = api.post(CONNECT, headers=headers, json=body)
    assert answer.status_code == 200
    assert answer.get_json()["status"] == "authorization_required"
    assert rows(home, "SELECT credentials_enc FROM google_accounts") == [("",)]


def test_control_plane_refusing_the_sign_in_asks_for_consent_again(
    api: FlaskClient, google: Google, home: Path  # noqa: F811
) -> None:
    headers = admin(api)
    body = {"credentials": google.credentials, "tunnel": "none"}
    sign_in(api, api.post(CONNECT, headers=headers, json=body).get_json()["auth_url"])
    google.colab.fail_next += [(401, "{}")] * 3  # still 401 after two token refreshes
    answer = api.post(CONNECT, headers=headers, json=body).get_json()
    assert answer["status"] == "authorization_required" and google.colab.assignments == {}


def test_a_worker_restarted_with_another_secret_is_routed_around(
    api: FlaskClient, worker: WorkerServer, gpu: FakeBackend
) -> None:
    headers = admin(api)
    api.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "gpu1"})
    port = worker.port
    worker.stop()
    rotated = create_worker_app(gpu, "a-new-secret-nobody-told-us", runtime_info=RUNTIME)
    again = WorkerServer(rotated, port=port).start()
    try:
        assert ask(api, headers)["backend"] == "local"
        entry = worker_entry(api, headers, "gpu1")
        assert "check the worker secret" in entry["last_error"]
        assert gpu.history == []  # the worker ran nothing it could not verify
    finally:
        again.stop()


def test_a_colab_runtime_whose_launch_fails_is_released(
    api: FlaskClient, google: Google, home: Path  # noqa: F811
) -> None:
    headers = admin(api)
    body = {"credentials": google.credentials, "tunnel": "none"}
    sign_in(api, api.post(CONNECT, headers=headers, json=body).get_json()["auth_url"])
    answer = api.post(CONNECT, headers=headers, json=body)  # the stand-in's proxy has no kernels
    assert answer.status_code == 503, answer.get_json()
    assert "refused the wheel upload (HTTP 404)" in answer.get_json()["error"]["message"]
    assert ("GET", "/tun/m/unassign/gpu-t4-s-1?authuser=0") in google.colab.requests
    assert google.colab.assignments == {} and rows(home, "SELECT name FROM workers") == []


def test_a_colab_worker_comes_back_with_its_keep_alive_after_a_restart(
    build: Callable[..., Flask], worker: WorkerServer, google: Google, home: Path  # noqa: F811
) -> None:
    from local_api.remote.workers import Attached, build_backend

    first = build()
    client = first.test_client()
    headers = admin(client)
    body = {"credentials": google.credentials, "tunnel": "none"}
    sign_in(client, client.post(CONNECT, headers=headers, json=body).get_json()["auth_url"])
    colab = stored_runtime(google)  # a runtime the service got before it stopped
    with first.app_context():
        first.extensions["remote"].attach(Attached(
            "colab-t4-1", "worker", worker.url, build_backend("colab-t4-1", "worker", worker.url,
                                                              SECRET, 10),
            {"mode": "credentials", "launched": False, "colab": colab}), SECRET, 1)

    again = build()  # same home: the worker, its Colab runtime and the sign-in come back
    keeper = again.extensions["remote"].get("colab-t4-1").keepalive
    assert keeper is not None
    keeper.tick()  # the proxy token was unknown after the restart: renewed on the first round
    assert keeper.last_error is None and keeper.assignment.proxy_token not in ("", "old")
    assert google.colab.keepalives == ["gpu-t4-s-9"]
    gone = again.test_client().delete(CONNECT, headers=headers).get_json()
    assert gone["released"] == "gpu-t4-s-9" and google.colab.assignments == {}


PASSWORD = "pw-9Xq-tunnel-secret"


def basic_auth(app: Flask, user: str, password: str) -> Flask:
    """Put HTTP basic auth in front of a worker, as an ngrok tunnel with basic_auth does."""
    inner = app.wsgi_app
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("HTTP_AUTHORIZATION") != expected:
            start_response("401 UNAUTHORIZED", [("Content-Type", "text/plain")])
            return [b"tunnel: basic auth required"]
        return inner(environ, start_response)

    app.wsgi_app = guarded  # type: ignore[method-assign]
    return app


def test_credentials_in_a_worker_url_never_show_and_still_work_after_a_restart(
    build: Callable[..., Flask], make_app: Callable[..., Flask], gpu: FakeBackend, home: Path,
    google: Google, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    guarded = WorkerServer(basic_auth(create_worker_app(gpu, SECRET, runtime_info=RUNTIME),
                                      "alice", PASSWORD)).start()
    port = guarded.port
    url = f"http://alice:{PASSWORD}@127.0.0.1:{port}"
    first = build(failure_threshold=1).test_client()
    headers = admin(first)
    try:
        answer = first.post(CONNECT, headers=headers, json={
            "worker_url": url, "worker_secret": SECRET, "name": "gpu1"})
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["url"] == f"http://127.0.0.1:{port}"
        assert ask(first, headers)["backend"] == "gpu1"  # the tunnel's basic auth went along
    finally:
        guarded.stop()
    assert ask(first, headers)["backend"] == "local"  # the worker is gone
    status = first.get("/api/v1/system/status", headers=headers)
    entry = worker_entry(first, headers, "gpu1")
    assert entry["last_error"] and entry["url"] == f"http://127.0.0.1:{port}"
    (stored,) = rows(home, "SELECT url, runtime, secret_enc FROM workers")
    audit = rows(home, "SELECT details FROM audit_log")
    for seen in (status.get_data(as_text=True), json.dumps([list(stored), [a[0] for a in audit]])):
        assert PASSWORD not in seen
    assert stored[0] == f"http://127.0.0.1:{port}"

    back = WorkerServer(basic_auth(create_worker_app(gpu, SECRET, runtime_info=RUNTIME),
                                   "alice", PASSWORD), port=port).start()
    try:  # a restart: the sealed URL brings the credentials back
        again = build().test_client()
        again.application.extensions["compute"].router.probe_all()
        assert worker_entry(again, headers, "gpu1")["healthy"] is True
        assert ask(again, headers)["backend"] == "gpu1"
    finally:
        back.stop()
    alone = make_app({"home": home}, router=Router(None, failure_threshold=1),
                     google=google.endpoints).test_client()  # no local backend to fall back on
    alone.application.extensions["compute"].router.probe_all()
    refused = alone.post("/api/v1/chat/completion", headers=headers,
                         json={"prompt": "Capital of France?"})
    assert refused.status_code == 503, refused.get_json()
    message = refused.get_json()["error"]["message"]
    assert "gpu1" in message and PASSWORD not in message
    assert PASSWORD not in caplog.text


def test_a_stale_stored_worker_is_replaced_and_one_never_attached_can_be_detached(
    build: Callable[..., Flask], worker: WorkerServer, home: Path
) -> None:
    build()  # creates the database
    stale = ("INSERT INTO workers (name, kind, url, secret_enc, runtime, created_at) VALUES "
             "('{}', 'worker', 'http://127.0.0.1:9', 'no-longer-decrypts', '{{}}', "
             "'2024-01-01 00:00:00')")
    execute(home, stale.format("gpu1"), stale.format("ghost"))
    api = build().test_client()  # both rows are skipped at restore: their secret is unreadable
    headers = admin(api)
    assert [b["name"] for b in api.get("/api/v1/system/status", headers=headers)
            .get_json()["backends"]] == ["local"]

    answer = api.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "gpu1"})
    assert answer.status_code == 200, answer.get_json()
    assert rows(home, "SELECT name, url FROM workers ORDER BY name") == [
        ("ghost", "http://127.0.0.1:9"), ("gpu1", worker.url)]
    assert ask(api, headers)["backend"] == "gpu1"

    gone = api.delete(CONNECT, headers=headers, json={"name": "ghost"})
    assert gone.status_code == 200, gone.get_json()
    assert gone.get_json()["worker"] == "ghost" and gone.get_json()["warnings"]
    assert rows(home, "SELECT name FROM workers") == [("gpu1",)]
    assert ask(api, headers)["backend"] == "gpu1"  # the attached one is untouched


def test_a_worker_whose_row_cannot_be_written_is_not_routed_to(
    api: FlaskClient, worker: WorkerServer, home: Path
) -> None:
    headers = admin(api)
    refuse_inserts(home, "workers")
    answer = api.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "gpu1"})
    assert answer.status_code == 500 and answer.get_json()["error"]["code"] == "INTERNAL_ERROR"
    names = [b["name"] for b in api.get("/api/v1/system/status", headers=headers)
             .get_json()["backends"]]
    assert names == ["local"] and ask(api, headers)["backend"] == "local"
    assert api.delete(CONNECT, headers=headers).status_code == 404
    allow_inserts(home, "workers")
    again = api.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "gpu1"})
    assert again.status_code == 200, again.get_json()  # nothing of the failed try was left


def test_resync_after_a_database_restore_attaches_what_the_database_holds(
    api: FlaskClient, worker: WorkerServer, home: Path
) -> None:
    from local_api.remote.workers import resync

    headers = admin(api)
    assert api.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "today"}).status_code == 200
    app = api.application
    sealed = app.extensions["secret_box"].encrypt(SECRET)
    execute(home, "DELETE FROM workers",  # the backup holds another worker, not today's
            "INSERT INTO workers (name, kind, url, secret_enc, runtime, created_at) VALUES "
            f"('yesterday', 'worker', '{worker.url}', '{sealed}', '{{}}', '2024-01-01 00:00')")
    assert resync(app) == {"attached": ["yesterday"], "dropped": ["today"]}
    app.extensions["compute"].router.probe_all()
    names = [b["name"] for b in api.get("/api/v1/system/status", headers=headers)
             .get_json()["backends"]]
    assert names == ["local", "yesterday"]
    assert ask(api, headers)["backend"] == "yesterday"


def test_the_alpha_q_body_asks_for_consent_before_any_tunnel_check(
    api: FlaskClient, google: Google, home: Path  # noqa: F811
) -> None:
    headers = admin(api)
    body = {"credentials": google.credentials}  # AQ's documented body: no tunnel fields
    first = api.post(CONNECT, headers=headers, json=body)
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["status"] == "authorization_required"
    assert first.get_json()["auth_url"].startswith(google.endpoints.auth_uri + "?")
    sign_in(api, first.get_json()["auth_url"])
    for extra in ({}, {"tunnel": "ngrok"}):
        answer = api.post(CONNECT, headers=headers, json={**body, **extra})
        assert answer.status_code == 400, answer.get_json()
        assert answer.get_json()["error"]["details"]["field"] == "ngrok_token"
    assert google.colab.assignments == {} and rows(home, "SELECT name FROM workers") == []


def test_an_unreachable_google_token_endpoint_is_503_and_keeps_the_sign_in(
    api: FlaskClient, google: Google, home: Path  # noqa: F811
) -> None:
    headers = admin(api)
    body = {"credentials": google.credentials, "tunnel": "none"}
    sign_in(api, api.post(CONNECT, headers=headers, json=body).get_json()["auth_url"])
    google.oauth.tokens.access.clear()  # Colab refuses the token: it must be refreshed...
    assert google.oauth_server is not None
    google.oauth_server.__exit__(None, None, None)  # ...at a token endpoint that is down
    answer = api.post(CONNECT, headers=headers, json=body)
    assert answer.status_code == 503, answer.get_json()
    assert answer.get_json()["error"]["code"] == "BACKEND_UNAVAILABLE"
    assert "Google sign-in" in answer.get_json()["error"]["message"]
    (stored,) = rows(home, "SELECT credentials_enc FROM google_accounts")
    assert stored[0]  # a network fault is not a revoked sign-in
    assert google.colab.assignments == {} and rows(home, "SELECT name FROM workers") == []


def test_the_launch_names_no_public_package_unless_a_package_spec_is_given(
    api: FlaskClient,
) -> None:
    from local_api.remote.connect_request import parse
    from local_api.remote.launching import launch_parameters

    body = {"runtime_url": "http://127.0.0.1:8888", "tunnel": "none", "timeout": 120}
    given = {"runtime_url": "http://gpu-box:8888", "package_spec": "git+https://example.org/cb@v1"}
    launch, other = parse(body).launch, parse(given).launch  # type: ignore[union-attr]
    with api.application.app_context():
        params = launch_parameters(launch, "s" * 32, "http://127.0.0.1:8888")
        own = launch_parameters(other, "s" * 32, "http://gpu-box:8888")
    assert body == {"runtime_url": "http://127.0.0.1:8888", "tunnel": "none", "timeout": 120}
    assert params["package_spec"] == ""  # the launch uploads this service's own wheel
    assert (params["start_timeout"], params["host"]) == (120.0, "127.0.0.1")
    assert (own["package_spec"], own["host"]) == ("git+https://example.org/cb@v1", "0.0.0.0")

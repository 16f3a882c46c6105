"""Two API instances on one database (SQLite and a real PostgreSQL), in one process: a worker
attached through one is routed to by the other within one probe interval, and dropped there
once detached; Colab keep-alives run on one instance at a time, taken over when it dies."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from bridge.router import Router
from colab_runtime.worker import WorkerServer, create_worker_app
from local_api.remote import shared, stored
from local_api.remote.workers import Attached, Remote, build_backend
from tests.support.connect import CONNECT, RUNTIME, SECRET, WORKER_ANSWER, admin, ask
from tests.support.fakes import FakeBackend
from tests.support.remote import Google, sign_in, stored_runtime

pytestmark = pytest.mark.usefixtures("database_url")
INTERVAL = 0.5  # the router's probe interval: how soon an instance learns of a change


@pytest.fixture
def worker() -> Iterator[WorkerServer]:
    gpu = FakeBackend("gpu", default=WORKER_ANSWER, models=[DEFAULT_MODEL_ID])
    server = WorkerServer(create_worker_app(gpu, SECRET, runtime_info=RUNTIME)).start()
    yield server
    server.stop()
    gpu.release()


@pytest.fixture
def instance(make_app: Callable[..., Flask], home: Path, google: Google
             ) -> Callable[..., Flask]:
    """An API instance named ``name``; all share one database and one secret key (home)."""
    def build(name: str, endpoints: object = None) -> Flask:
        router = Router(FakeBackend(f"local-{name}", default=f"answered by {name}"),
                        probe_interval=INTERVAL)
        return make_app({"home": home, "instance_id": name}, router=router,
                        google=endpoints or google.endpoints)

    return build


def _until(check: Callable[[], bool], seconds: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not within the bound"
        time.sleep(0.05)
    return time.monotonic() - start


def test_a_worker_attached_through_one_instance_answers_on_the_other(
        instance: Callable[..., Flask], worker: WorkerServer) -> None:
    a, b = instance("a").test_client(), instance("b").test_client()
    headers = admin(a)
    assert ask(b, headers)["backend"] == "local-b"

    answer = a.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "gpu1"})
    assert answer.status_code == 200, answer.get_json()
    waited = _until(lambda: ask(b, headers)["backend"] == "gpu1", 4 * INTERVAL + 5)
    assert waited < 2 * INTERVAL + 5  # one interval, and a probe, on a busy machine
    reply = ask(b, headers)
    assert (reply["completion"], reply["backend"]) == (WORKER_ANSWER, "gpu1")

    gone = a.delete(CONNECT, headers=headers, json={"name": "gpu1"})
    assert gone.status_code == 200, gone.get_json()
    _until(lambda: ask(b, headers)["backend"] == "local-b", 2 * INTERVAL + 5)
    status = b.get("/api/v1/system/status", headers=headers).get_json()
    assert [x["name"] for x in status["backends"]] == ["local-b"]


def _keeper_running(app: Flask) -> bool:
    registry: Remote = app.extensions["remote"]
    found = [w for w in registry.all() if w.name == "colab-t4-1"]
    return bool(found and found[0].keepalive is not None and found[0].keepalive.started)


def test_colab_keep_alives_run_on_one_instance_and_move_when_it_dies(
        instance: Callable[..., Flask], worker: WorkerServer, google: Google,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared, "TTL", 1.5)
    pinging = dataclasses.replace(google.endpoints, keepalive_interval=0.1)
    first, second = instance("a", pinging), instance("b", pinging)
    client = first.test_client()
    headers = admin(client)
    body = {"credentials": google.credentials, "tunnel": "none"}
    sign_in(client, client.post(CONNECT, headers=headers, json=body).get_json()["auth_url"])
    colab = stored_runtime(google)
    with first.app_context():
        first.extensions["remote"].attach(Attached(
            "colab-t4-1", "worker", worker.url,
            build_backend("colab-t4-1", "worker", worker.url, SECRET, 10),
            {"mode": "credentials", "launched": False, "colab": colab},
            client=stored.colab_client(colab, 1)), SECRET, 1)  # as colab_connect passes it

    # the second instance routes to it too, but only the lease holder keeps it alive
    _until(lambda: "colab-t4-1" in second.extensions["remote"].names(), 2 * INTERVAL + 5)
    _until(lambda: len(google.colab.keepalives) >= 3, 10)
    assert _keeper_running(first) and not _keeper_running(second)
    assert second.extensions["remote"].shared.lease.holder() == "a"

    # a request sent through the other instance counts as use for the holder's idle check
    keeper = first.extensions["remote"].get("colab-t4-1").keepalive
    google.colab.now += 600
    assert keeper.last_used() < google.colab.now
    assert ask(second.test_client(), headers)["backend"] == "colab-t4-1"
    _until(lambda: keeper.last_used() == google.colab.now, 2 * INTERVAL + 5)

    # the holder dies: no renewal, no pings; the lease lapses and the other takes over
    dead: Remote = first.extensions["remote"]
    dead.shared.halt()
    for attached in dead.all():
        assert attached.keepalive is not None
        attached.keepalive.stop()
    took = _until(lambda: _keeper_running(second), shared.TTL + 5)
    assert took < shared.TTL + 3
    before = len(google.colab.keepalives)
    _until(lambda: len(google.colab.keepalives) >= before + 3, 10)
    assert second.extensions["remote"].shared.lease.holder() == "b"
    assert google.colab.assignments and "gpu-t4-s-9" in google.colab.assignments


def test_with_redis_an_attach_reaches_the_other_instance_at_once(
        make_app: Callable[..., Flask], home: Path, google: Google, worker: WorkerServer,
        redis_url: str) -> None:
    def build(name: str) -> Flask:  # a probe interval far longer than the test waits
        router = Router(FakeBackend(f"local-{name}", default=f"answered by {name}"),
                        probe_interval=120)
        return make_app({"home": home, "instance_id": name, "redis_url": redis_url},
                        router=router, google=google.endpoints)

    a, b = build("a").test_client(), build("b").test_client()
    headers = admin(a)
    assert ask(b, headers)["backend"] == "local-b"
    answer = a.post(CONNECT, headers=headers, json={
        "worker_url": worker.url, "worker_secret": SECRET, "name": "gpu1"})
    assert answer.status_code == 200, answer.get_json()
    _until(lambda: ask(b, headers)["backend"] == "gpu1", 20)  # the notice, not the 120 s round
    gone = a.delete(CONNECT, headers=headers, json={"name": "gpu1"})
    assert gone.status_code == 200, gone.get_json()
    _until(lambda: ask(b, headers)["backend"] == "local-b", 20)

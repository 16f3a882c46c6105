"""The whole remote chain on loopback: connect → papermill runs colab_worker.ipynb on a real Jupyter
server → the real worker serves the real default model → generations route to it → it is killed
mid-stream and the stream completes locally. Then the Colab path through the control-plane and
OAuth stand-ins, with the same Jupyter server behind the stand-in's runtime proxy.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from flask import Flask
from sqlalchemy import text

from bridge.config import DEFAULT_MODEL_ID
from tests.support.app import Auth, LiveServer
from tests.support.remote import Google, Jupyter, sign_in, workers_of

CONNECT = "/api/v1/system/colab/connect"
PROMPT = "Write a long story about a dragon who learns to bake bread."



@pytest.fixture
def reap(jupyter: Jupyter) -> Iterator[None]:  # noqa: F811
    """Kill whatever worker a test left running (each is its own process group)."""
    yield
    for proc in workers_of(jupyter):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def serve(make_app: Callable[..., Flask], tmp_path: Path, local_backend: Any,
          model_store: Any) -> Callable[..., tuple[httpx.Client, dict[str, str], Flask]]:
    servers: list[LiveServer] = []
    clients: list[httpx.Client] = []

    def start(**collaborators: Any) -> tuple[httpx.Client, dict[str, str], Flask]:
        app = make_app({"home": tmp_path / f"home{len(servers)}"}, local=local_backend,
                       store=model_store, **collaborators)
        server = LiveServer(app).__enter__()
        servers.append(server)
        http = httpx.Client(base_url=server.url, timeout=300)
        clients.append(http)
        return http, Auth(app.test_client()).headers("admin"), app

    yield start  # type: ignore[misc]
    for http in clients:
        http.close()
    for server in servers:
        server.__exit__(None, None, None)


def ask(http: httpx.Client, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    body = {"prompt": "What is the capital of France?",
            "parameters": {"temperature": 0, "max_tokens": 12}, **extra}
    answer = http.post("/api/v1/chat/completion", json=body,
                       headers={**headers, "Cache-Control": "no-cache"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_runtime_url_connect_generate_and_fail_over_mid_stream(
    serve: Any, jupyter: Jupyter, local_backend: Any, reap: None  # noqa: F811
) -> None:
    http, headers, _ = serve()
    refused = http.post(CONNECT, headers=headers, json={
        "runtime_url": jupyter.url, "token": "wrong-token", "tunnel": "none"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["details"]["field"] == "token"
    assert "refused the token" in refused.json()["error"]["message"]

    answer = http.post(CONNECT, headers=headers, json={
        "runtime_url": jupyter.url, "token": jupyter.token, "tunnel": "none", "name": "lab-gpu"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["worker"], body["kind"]) == ("connected", "lab-gpu", "worker")
    assert body["runtime_info"]["type"] == "jupyter" and body["runtime_info"]["memory"] > 0
    assert DEFAULT_MODEL_ID in body["models"]
    (worker,) = workers_of(jupyter)  # one detached worker, outliving the notebook's kernel

    reply = ask(http, headers)
    assert reply["backend"] == "lab-gpu" and "Paris" in reply["completion"]
    status = http.get("/api/v1/system/status", headers=headers).json()
    entry = next(b for b in status["backends"] if b["name"] == "lab-gpu")
    assert entry["healthy"] is True and entry["time_left"] is None  # not a Colab runtime

    request = {"prompt": PROMPT, "stream": True,
               "parameters": {"temperature": 0, "max_tokens": 32}}
    lines: list[dict[str, Any]] = []
    with http.stream("POST", "/api/v1/chat/completion", json=request, headers=headers) as stream:
        for raw in stream.iter_lines():
            lines.append(json.loads(raw))
            if sum("token" in line for line in lines) == 3 and worker.is_running():
                os.killpg(worker.pid, signal.SIGKILL)  # the worker dies mid-answer
    tokens = [line["token"] for line in lines if "token" in line]
    switched = [line for line in lines if line.get("event") == "backend_switched"]
    assert len(switched) == 1, lines
    assert (switched[0]["from"], switched[0]["to"]) == ("lab-gpu", "local")
    final = lines[-1]
    assert final["is_final"] is True and final["backend"] == "local"
    assert final["completion"] == "".join(tokens) and len(tokens) > 3
    assert final["usage"]["completion_tokens"] >= 24  # the local side went on, not over

    again = ask(http, headers)  # the dead worker fails before its first token: invisible
    assert again["backend"] == "local" and "Paris" in again["completion"]
    gone = http.request("DELETE", CONNECT, headers=headers, json={"name": "lab-gpu"}).json()
    assert gone["status"] == "disconnected" and gone["stopped"] is False  # it was dead already


def test_a_notebook_run_that_raises_surfaces_its_error(
    serve: Any, jupyter: Jupyter, reap: None  # noqa: F811
) -> None:
    http, headers, _ = serve()
    answer = http.post(CONNECT, headers=headers, json={
        "runtime_url": jupyter.url, "token": jupyter.token, "model_id": "no-such-model"})
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["message"].startswith("the worker notebook failed: BackendUnavailable")
    assert "no-such-model" in error["message"] and error["details"]["ename"] == \
        "BackendUnavailable"
    assert "output_notebook_path" not in error["details"]
    assert workers_of(jupyter) == []


def test_colab_connect_keep_alive_token_renewal_and_release(
    serve: Any, jupyter: Jupyter, google: Google, reap: None  # noqa: F811
) -> None:
    google.colab.runtime_url = jupyter.url  # the stand-in's runtime proxy is the Jupyter server
    (jupyter.root / "colab-standin-url").write_text(google.endpoints.colab_url)
    http, headers, app = serve(google=google.endpoints)
    body = {"credentials": google.credentials, "accelerator": "T4", "tunnel": "none"}
    first = http.post(CONNECT, headers=headers, json=body).json()
    assert first["status"] == "authorization_required"
    sign_in(app.test_client(), first["auth_url"])

    answer = http.post(CONNECT, headers=headers, json=body)
    assert answer.status_code == 200, answer.text
    connected = answer.json()
    assert connected["status"] == "connected" and connected["worker"] == "colab-t4-1"
    assert connected["runtime"] == {"endpoint": "gpu-t4-s-1", "accelerator": "T4",
                                    "variant": "GPU", "fit": 5400.0}
    assert list(google.colab.assignments) == ["gpu-t4-s-1"]
    assert ask(http, headers)["backend"] == "colab-t4-1"

    keeper = app.extensions["remote"].get("colab-t4-1").keepalive
    assert google.colab.keepalives == ["gpu-t4-s-1"]  # the pre-flight, right after assign
    for _ in range(3):  # 3 x 2000 s > fit: in use, kept alive, not reclaimed
        google.colab.now += 2000
        assert ask(http, headers)["backend"] == "colab-t4-1"
        keeper.tick()
    assert google.colab.keepalives == ["gpu-t4-s-1"] * 4 and google.colab.reclaimed == []
    old_token = keeper.assignment.proxy_token
    google.colab.now = keeper.assignment.token_expires_at + 1  # the token expired, not the VM
    keeper.tick()
    assert keeper.last_error is None and keeper.assignment.proxy_token != old_token
    assert ask(http, headers)["backend"] == "colab-t4-1"
    status = http.get("/api/v1/system/status", headers=headers).json()
    entry = next(b for b in status["backends"] if b["name"] == "colab-t4-1")
    assert entry["healthy"] is True and entry["time_left"].startswith("PT1")
    assert entry["keepalive"] == {"endpoint": "gpu-t4-s-1", "state": "alive", "last_error": None}
    assert entry["limits"]["idle_reclaim"] == "PT1H30M"

    (worker,) = workers_of(jupyter)
    gone = http.request("DELETE", CONNECT, headers=headers).json()
    assert gone == {"status": "disconnected", "worker": "colab-t4-1", "stopped": True,
                    "released": "gpu-t4-s-1", "warnings": []}
    assert google.colab.assignments == {}
    deadline = time.monotonic() + 20
    while worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the worker did not stop on /shutdown"
        time.sleep(0.1)


def wait_until_gone(jupyter: Jupyter, seconds: float = 20) -> list[psutil.Process]:  # noqa: F811
    deadline = time.monotonic() + seconds
    while (alive := [p for p in workers_of(jupyter) if p.status() != psutil.STATUS_ZOMBIE]) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def test_a_launched_worker_is_stopped_when_its_attach_fails(
    serve: Any, jupyter: Jupyter, reap: None  # noqa: F811
) -> None:
    http, headers, app = serve()
    with app.extensions["db"].begin() as conn:  # the database refuses the new row
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON workers "
                          "BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
    answer = http.post(CONNECT, headers=headers, json={
        "runtime_url": jupyter.url, "token": jupyter.token, "tunnel": "none", "name": "lab"})
    assert answer.status_code == 500, answer.text
    assert wait_until_gone(jupyter) == []  # not left running with its model loaded
    names = [b["name"] for b in http.get("/api/v1/system/status", headers=headers)
             .json()["backends"]]
    assert names == ["local"]


def test_the_connect_timeout_bounds_the_launch_and_leaves_no_worker(
    serve: Any, jupyter: Jupyter, reap: None  # noqa: F811
) -> None:
    http, headers, _ = serve()
    started = time.monotonic()
    answer = http.post(CONNECT, headers=headers, json={
        "runtime_url": jupyter.url, "token": jupyter.token, "tunnel": "none", "timeout": 1})
    assert answer.status_code == 503, answer.text
    assert "did not start in 1s" in answer.json()["error"]["message"]
    assert time.monotonic() - started < 60
    assert wait_until_gone(jupyter) == []


def test_a_colab_runtime_reclaimed_server_side_is_detached_and_answered_locally(
    serve: Any, jupyter: Jupyter, google: Google, reap: None  # noqa: F811
) -> None:
    google.colab.runtime_url = jupyter.url
    (jupyter.root / "colab-standin-url").write_text(google.endpoints.colab_url)
    http, headers, app = serve(google=google.endpoints)
    body = {"credentials": google.credentials, "accelerator": "T4", "tunnel": "none"}
    sign_in(app.test_client(), http.post(CONNECT, headers=headers, json=body).json()["auth_url"])
    assert http.post(CONNECT, headers=headers, json=body).json()["status"] == "connected"
    assert ask(http, headers)["backend"] == "colab-t4-1"

    keeper = app.extensions["remote"].get("colab-t4-1").keepalive
    google.colab.reclaim("gpu-t4-s-1")  # Colab takes it back (idle, capped or restarted)
    keeper.tick()  # the next keep-alive round notices it
    status = http.get("/api/v1/system/status", headers=headers).json()
    assert all(b["name"] != "colab-t4-1" for b in status["backends"])
    assert status["lost"][-1]["worker"] == "colab-t4-1"
    assert ask(http, headers)["backend"] == "local"
    gone = http.request("DELETE", CONNECT, headers=headers)
    assert gone.status_code == 404  # nothing left to detach: it was detached already

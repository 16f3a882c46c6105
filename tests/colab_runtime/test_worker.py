"""The real worker app on a real loopback server, spoken to by RemoteBackend over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from werkzeug.serving import make_server

from bridge.backends.remote import RemoteBackend
from bridge.config import WorkerSettings
from bridge.errors import BackendUnavailable, ModelNotFound, NotSupported, ValidationError
from bridge.router import Router
from bridge.signing import sign
from bridge.types import BackendSwitched, GenerateRequest, Token, collect
from colab_runtime.worker import (
    EchoBackend,
    WorkerServer,
    create_worker_app,
    detect_runtime_info,
    start_detached,
)
from tests.support.fakes import FakeBackend, FakeClock

SECRET = "worker-secret-for-tests"
ANSWER = "Paris is the capital and largest city of France."
RUNTIME = {"type": "colab", "device": "cuda", "gpu": "Tesla T4", "memory": {"gpu_total_mb": 15360}}


@pytest.fixture
def gpu() -> Iterator[FakeBackend]:
    backend = FakeBackend("local", default=ANSWER, models=["smollm2"])
    yield backend
    backend.release()  # a test that made it hang lets its server thread finish


@pytest.fixture
def server(gpu: FakeBackend) -> Iterator[WorkerServer]:
    server = WorkerServer(create_worker_app(gpu, SECRET, runtime_info=RUNTIME)).start()
    yield server
    server.stop()


@pytest.fixture
def remote(server: WorkerServer) -> Iterator[RemoteBackend]:
    backend = RemoteBackend("colab-t4", server.url, SECRET, read_timeout=10)
    yield backend
    backend.close()


def ask(prompt: str = "Capital of France?", max_tokens: int = 64) -> GenerateRequest:
    return GenerateRequest(model="smollm2", prompt=prompt, max_tokens=max_tokens, seed=7)


def post_generate(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(url + "/generate", content=body, headers=headers, timeout=10)


def test_health_is_open_and_says_it_is_a_worker(server: WorkerServer) -> None:
    answer = httpx.get(server.url + "/health", timeout=10)
    assert answer.json() == {"status": "ok", "service": "compute-bridge-worker"}


def test_probe_reads_info(remote: RemoteBackend) -> None:
    probe = remote.probe()
    assert probe["healthy"] is True
    assert probe["models"] == ["smollm2"]
    assert probe["runtime_info"] == RUNTIME
    assert probe["latency_ms"] >= 0
    assert remote.ready() is True


def test_a_signed_generate_streams_the_answer(remote: RemoteBackend, gpu: FakeBackend) -> None:
    answer = collect(remote.generate(ask()))
    assert answer.text == ANSWER
    assert answer.done.backend == "colab-t4"  # the worker's own name for itself is not shown
    assert gpu.history == [ask()]
    assert all(isinstance(e, Token) for e in answer.events[:-1])


def test_unsigned_wrong_secret_replayed_and_stale_requests_get_401(
    server: WorkerServer, gpu: FakeBackend
) -> None:
    body = b'{"model": "smollm2", "prompt": "hi"}'
    good = sign(SECRET, "POST", "/generate", body)
    assert post_generate(server.url, good, body).status_code == 200
    stale = sign(SECRET, "POST", "/generate", body, timestamp=int(good["X-Bridge-Timestamp"]) - 600)
    refused = {
        "unsigned": {},
        "wrong secret": sign("not-the-secret", "POST", "/generate", body),
        "replayed": good,
        "stale": stale,
    }
    for why, headers in refused.items():
        answer = post_generate(server.url, headers, body)
        assert answer.status_code == 401, why
        assert answer.json()["error"]["code"] == "UNAUTHORIZED", why
    assert len(gpu.history) == 1  # none of the refused requests ran
    assert httpx.get(server.url + "/info", timeout=10).status_code == 401


def test_a_captured_request_replayed_under_another_key_id_is_refused(
    server: WorkerServer, gpu: FakeBackend
) -> None:
    """The key-id header selects no secret on a worker; changing it must not make a replay new."""
    body = b'{"model": "smollm2", "prompt": "hi"}'
    captured = sign(SECRET, "POST", "/generate", body, key_id="worker")
    assert post_generate(server.url, captured, body).status_code == 200
    info = sign(SECRET, "GET", "/info")
    assert httpx.get(server.url + "/info", headers=info, timeout=10).status_code == 200
    for key_id in ("other", "worker2", ""):
        again = post_generate(server.url, {**captured, "X-Bridge-Key-Id": key_id}, body)
        assert again.status_code == 401, key_id
        replayed_info = httpx.get(server.url + "/info", headers={**info, "X-Bridge-Key-Id": key_id},
                                  timeout=10)
        assert replayed_info.status_code == 401, key_id
    assert len(gpu.history) == 1


def test_a_wrong_secret_makes_the_worker_unavailable_with_a_hint(server: WorkerServer) -> None:
    backend = RemoteBackend("colab-t4", server.url, "not-the-secret")
    try:
        with pytest.raises(BackendUnavailable, match="check the worker secret"):
            list(backend.generate(ask()))
        with pytest.raises(BackendUnavailable, match="check the worker secret"):
            backend.probe()
        assert backend.ready() is False
    finally:
        backend.close()


def test_errors_before_the_first_token_keep_their_status_and_class(
    server: WorkerServer, remote: RemoteBackend, gpu: FakeBackend
) -> None:
    gpu.fail = ModelNotFound("model 'smollm2' is not loaded", details={"model_id": "smollm2"})
    with pytest.raises(ModelNotFound) as caught:
        list(remote.generate(ask()))
    assert caught.value.details == {"model_id": "smollm2"}
    body = b'{"model": "smollm2", "prompt": "hi"}'
    answer = post_generate(server.url, sign(SECRET, "POST", "/generate", body), body)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "MODEL_NOT_FOUND"


def test_bad_bodies_and_unknown_paths_answer_in_the_envelope(server: WorkerServer) -> None:
    body = b'{"model": "smollm2"}'
    answer = post_generate(server.url, sign(SECRET, "POST", "/generate", body), body)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    answer = httpx.get(server.url + "/nope", headers=sign(SECRET, "GET", "/nope"), timeout=10)
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "NOT_FOUND")


def test_an_error_mid_stream_is_one_more_line(remote: RemoteBackend, gpu: FakeBackend) -> None:
    gpu.die_after = 2
    stream = remote.generate(ask())
    assert [next(stream), next(stream)] == [Token("Paris"), Token(" is")]
    with pytest.raises(BackendUnavailable, match="died after 2 tokens"):
        next(stream)


def test_load_model(remote: RemoteBackend, gpu: FakeBackend) -> None:
    answer = remote.load_model("qwen2.5-0.5b", "4bit")
    assert answer == {"status": "loaded", "model_id": "qwen2.5-0.5b", "load_time": 0.25}
    assert gpu.loads == [("qwen2.5-0.5b", "4bit")]
    assert "qwen2.5-0.5b" in remote.probe()["models"]


def test_load_model_on_a_backend_that_cannot_load(remote_echo: RemoteBackend) -> None:
    with pytest.raises(NotSupported):
        remote_echo.load_model("x")


@pytest.fixture
def remote_echo() -> Iterator[RemoteBackend]:
    app = create_worker_app(EchoBackend(), SECRET, runtime_info={})
    backend = RemoteBackend("echo", "http://worker", SECRET, transport=httpx.WSGITransport(app=app))
    yield backend
    backend.close()


def test_signing_works_in_process_through_wsgi(remote_echo: RemoteBackend) -> None:
    assert collect(remote_echo.generate(ask("one two three"))).text == "one two three"


def test_a_worker_that_hangs_times_out_and_the_router_continues_locally(
    server: WorkerServer, gpu: FakeBackend
) -> None:
    local = FakeBackend("local", default=ANSWER)
    router = Router(local)
    router.add_worker(RemoteBackend("colab-t4", server.url, SECRET, read_timeout=0.5))
    try:
        gpu.hang_after = 3
        events = list(router.generate(ask()))
        switched = [e for e in events if isinstance(e, BackendSwitched)]
        assert len(switched) == 1 and "timed out" in switched[0].reason
        assert collect(events).text == ANSWER
        assert local.history[-1].prefill == "Paris is the"
        gpu.hang_after = 0  # hangs before its first token: failover shows only in Done
        answer = collect(router.generate(ask()))
        assert (answer.text, answer.done.backend) == (ANSWER, "local")
    finally:
        gpu.release()
        router.close()


def test_the_circuit_opens_when_the_worker_goes_and_closes_when_it_returns(
    gpu: FakeBackend,
) -> None:
    app = create_worker_app(gpu, SECRET, runtime_info=RUNTIME)
    server = WorkerServer(app).start()
    port, clock = server.port, FakeClock()
    router = Router(FakeBackend("local"), failure_threshold=2, cooldown=60, clock=clock)
    router.add_worker(RemoteBackend("colab-t4", server.url, SECRET, connect_timeout=2))
    try:
        router.probe_all()
        assert collect(router.generate(ask())).done.backend == "colab-t4"
        server.stop()
        for _ in range(2):
            assert collect(router.generate(ask())).done.backend == "local"
        status = router.backends()[1]
        assert (status["circuit"], status["healthy"]) == ("open", False)
        assert "ConnectError" in status["last_error"]
        server = WorkerServer(app, port=port).start()
        assert collect(router.generate(ask())).done.backend == "local"  # still open
        assert len(gpu.history) == 1
        clock.advance(60)
        router.probe_all()
        assert router.backends()[1]["circuit"] == "closed"
        assert collect(router.generate(ask())).done.backend == "colab-t4"
    finally:
        router.close()
        server.stop()


def foreign_app(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/html")])  # type: ignore[operator]
    return [b"<html>Jupyter Server</html>"]


def test_a_url_that_is_not_a_worker_is_backend_unavailable() -> None:
    foreign = make_server("127.0.0.1", 0, foreign_app, threaded=True)
    thread = threading.Thread(target=foreign.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    backend = RemoteBackend("oops", f"http://127.0.0.1:{foreign.server_port}", SECRET)
    try:
        for call in (backend.probe, lambda: list(backend.generate(ask()))):
            with pytest.raises(BackendUnavailable, match="is not a Compute Bridge worker"):
                call()
    finally:
        backend.close()
        foreign.shutdown()
        thread.join()
        foreign.server_close()
    closed = RemoteBackend("gone", f"http://127.0.0.1:{foreign.server_port}", SECRET)
    try:
        with pytest.raises(BackendUnavailable, match="ConnectError"):
            closed.probe()
    finally:
        closed.close()


def test_a_detached_worker_killed_mid_stream_is_replaced_by_local(tmp_path: Path) -> None:
    prompt = "one two three four five six seven eight"
    worker = start_detached(
        SECRET, log_path=tmp_path / "worker.log", backend="echo", echo_delay=0.5, timeout=60
    )
    router = Router(FakeBackend("local", default=prompt))
    router.add_worker(RemoteBackend("colab-t4", worker.url, SECRET))
    try:
        cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes()
        assert SECRET.encode() not in cmdline
        assert worker.public_url == worker.url
        stream = router.generate(ask(prompt))
        assert next(stream) == Token("one")
        os.killpg(worker.pid, signal.SIGKILL)
        rest = list(stream)
        switched = [e for e in rest if isinstance(e, BackendSwitched)]
        assert len(switched) == 1 and switched[0].to_backend == "local"
        assert "one" + "".join(e.text for e in rest if isinstance(e, Token)) == prompt
        assert collect(rest).done.backend == "local"
    finally:
        router.close()
        worker.stop()


def test_a_detached_worker_that_cannot_start_says_why(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs a secret"):
        start_detached("", log_path=tmp_path / "worker.log", backend="echo")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BackendUnavailable, match="exited with status 1") as caught:
            start_detached(
                SECRET, log_path=tmp_path / "worker.log", port=port, backend="echo", timeout=60
            )
    assert "Address already in use" in caught.value.message


def test_runtime_info_names_the_device_and_memory() -> None:
    info = detect_runtime_info()
    assert info["type"] in ("colab", "kaggle", "jupyter")
    assert info["device"] in ("cpu", "cuda")
    assert info["memory"]["host_total_mb"] > 0
    assert json.loads(json.dumps(info)) == info


def test_shutdown_is_signed_and_only_where_the_process_may_stop(gpu: FakeBackend) -> None:
    stopped: list[bool] = []
    app = create_worker_app(
        gpu, SECRET, runtime_info=RUNTIME, on_shutdown=lambda: stopped.append(True)
    )
    client = app.test_client()
    assert client.post("/shutdown").status_code == 401
    assert stopped == []
    answer = client.post("/shutdown", headers=sign(SECRET, "POST", "/shutdown"))
    assert (answer.status_code, answer.get_json()) == (200, {"status": "stopping"})
    assert stopped == [True]
    in_process = create_worker_app(gpu, SECRET, runtime_info=RUNTIME).test_client()
    answer = in_process.post("/shutdown", headers=sign(SECRET, "POST", "/shutdown"))
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (501, "NOT_SUPPORTED")


def test_a_detached_worker_stops_itself_on_a_signed_shutdown(tmp_path: Path) -> None:
    worker = start_detached(SECRET, log_path=tmp_path / "worker.log", backend="echo", timeout=60)
    backend = RemoteBackend("w", worker.url, SECRET)
    try:
        ready = json.loads((tmp_path / "worker.ready.json").read_text())
        assert ready["pid"] == worker.pid
        backend.shutdown()
        assert worker.process is not None and worker.process.wait(10) == 0
    finally:
        backend.close()
        worker.stop()


def test_the_worker_reads_its_environment_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"BRIDGE_WORKER_SECRET": "s" * 20, "NGROK_AUTHTOKEN": "n", "COLAB_RELEASE_TAG": "r"}
    assert WorkerSettings.from_env(env) == WorkerSettings("s" * 20, "n", "colab")
    assert WorkerSettings.from_env({"KAGGLE_KERNEL_RUN_TYPE": "i"}).runtime_type == "kaggle"
    assert WorkerSettings.from_env({}) == WorkerSettings("", "", "jupyter")
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-1")
    assert detect_runtime_info()["type"] == "colab"


class Interrupted(BaseException):
    """What a kernel interrupt (a launch past its timeout) raises in start_detached."""


def test_a_detached_start_that_is_interrupted_leaves_no_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def workers() -> list[psutil.Process]:
        return [p for p in psutil.Process().children()
                if "colab_runtime.worker" in " ".join(p.cmdline())]

    real_sleep, calls = time.sleep, []

    def interrupt(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) > 1:  # only the first wait for readiness is interrupted
            real_sleep(seconds)
            return
        assert workers(), "the worker process should be running by now"
        raise Interrupted  # what a launch timeout does

    monkeypatch.setattr(time, "sleep", interrupt)  # the clock: a process edge
    try:
        with pytest.raises(Interrupted):
            start_detached(SECRET, log_path=tmp_path / "w.log", backend="echo", timeout=60)
        assert workers() == []
    finally:
        for leftover in workers():
            leftover.kill()
            leftover.wait(10)

"""Remote worker through the API, on loopback: proxy overhead, streaming per-token cost, failover.

Three processes as a user runs them: `bridge serve` (the API), a detached worker with the
instant EchoBackend, and this client; plus, for comparison, a plain Flask pass-through proxy
in front of the same worker. (a) the same non-streaming request through the API vs straight to
the worker; (b) the added time per streamed token; (c) the worker killed during 100 requests.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks import GREEDY
from bridge.config import DEFAULT_MODEL_ID
from bridge.models.convert import prepare_default_model
from bridge.models.store import ModelStore
from bridge.signing import sign
from bridge.types import GenerateRequest, Message
from bridge.wire import request_to_dict

ROUNDS = 400
STREAM_RUNS, STREAM_TOKENS = 20, 400
BATCH, CLIENTS, KILL_AFTER = 100, 4, 25
LIMITS = {f"BRIDGE_LIMIT_{t}": "1000000/minute" for t in ("FREE", "PRO", "ENTERPRISE")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer")
        time.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _proxy_main(port: int, worker_url: str) -> None:
    """A plain Flask pass-through proxy: sign, forward, return the worker's bytes."""
    from flask import Flask, Response, request
    from werkzeug.serving import make_server

    secret = os.environ["BRIDGE_WORKER_SECRET"]
    app = Flask("proxy")
    client = httpx.Client(base_url=worker_url, timeout=60)

    @app.post("/generate")
    def forward() -> Response:
        body = request.get_data()
        answer = client.post("/generate", content=body, headers=sign(secret, "POST", "/generate",
                                                                      body))
        return Response(answer.content, status=answer.status_code,
                        content_type=answer.headers["content-type"])

    make_server("127.0.0.1", port, app, threaded=True).serve_forever()


class Direct:
    """The bench's own signed client of the worker."""

    def __init__(self, url: str, secret: str) -> None:
        self.http, self.secret = httpx.Client(base_url=url, timeout=60), secret

    def post(self, request: GenerateRequest, headers: dict[str, str] | None = None) -> bytes:
        body = json.dumps(request_to_dict(request)).encode()
        signed = {**sign(self.secret, "POST", "/generate", body), **(headers or {})}
        answer = self.http.post("/generate", content=body, headers=signed)
        answer.raise_for_status()
        return answer.content

    def stream_gaps(self, request: GenerateRequest) -> float:
        body = json.dumps(request_to_dict(request)).encode()
        with self.http.stream("POST", "/generate", content=body,
                              headers=sign(self.secret, "POST", "/generate", body)) as answer:
            return _per_token(answer, lambda line: '"token"' in line)


def _per_token(answer: httpx.Response, is_token: Callable[[str], bool]) -> float:
    """Seconds per token between the first and the last token line."""
    stamps = [time.perf_counter() for line in answer.iter_lines() if is_token(line)]
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def overhead(api: httpx.Client, headers: dict[str, str], direct: Direct, proxy: Direct) -> None:
    prompt = "hello world from the benchmark"
    request = GenerateRequest(DEFAULT_MODEL_ID, messages=(Message("user", prompt),),
                              max_tokens=16, temperature=0)
    body = {"prompt": prompt, "parameters": {**GREEDY, "max_tokens": 16}}

    def through_api() -> None:
        answer = api.post("/api/v1/chat/completion", json=body, headers=headers)
        assert answer.status_code == 200 and answer.json()["backend"] == "echo-worker", answer.text

    times: dict[str, list[float]] = {"direct": [], "proxy": [], "api": []}
    for index in range(ROUNDS + 20):
        for name, call in (("direct", lambda: direct.post(request)),
                           ("proxy", lambda: proxy.post(request)), ("api", through_api)):
            took = _timed(call)
            if index >= 20:  # warm-up rounds are not counted
                times[name].append(took)
    p50 = {k: statistics.median(v) for k, v in times.items()}
    p99 = {k: pct(v, 0.99) for k, v in times.items()}
    print(f"(a) one non-streaming request, {ROUNDS} rounds, p50 / p99 in ms: "
          + ", ".join(f"{k} {p50[k]:.2f} / {p99[k]:.2f}" for k in times))
    print(f"    API adds {p50['api'] - p50['direct']:.2f} ms p50 (goal <= 1), "
          f"{p99['api'] - p99['direct']:.2f} ms p99 (goal <= 3); a plain Flask proxy adds "
          f"{p50['proxy'] - p50['direct']:.2f} ms p50, {p99['proxy'] - p99['direct']:.2f} ms p99")
    print(f"    ratio API-added / proxy-added (p50) = "
          f"{(p50['api'] - p50['direct']) / max(1e-9, p50['proxy'] - p50['direct']):.2f}")
    hop = statistics.median(_timed(lambda: api.get("/healthz")) for _ in range(200))
    print(f"    of that, a bare GET /healthz on `bridge serve` takes {hop:.2f} ms p50 (the HTTP "
          "hop; auth, validation, storing the conversation and the router are the rest)")


def routing(direct: Direct, worker_url: str, secret: str) -> None:
    """What Router + RemoteBackend add in-process over the same signed httpx call."""
    from bridge.backends.remote import RemoteBackend
    from bridge.router import Router
    from bridge.types import collect
    from colab_runtime.worker import EchoBackend

    router = Router(EchoBackend())
    router.add_worker(RemoteBackend("echo-worker", worker_url, secret))
    request = GenerateRequest(DEFAULT_MODEL_ID, messages=(Message("user", "hello world"),),
                              max_tokens=16, temperature=0)
    raw, routed = [], []
    try:
        for index in range(ROUNDS + 20):
            a = _timed(lambda: direct.post(request))
            b = _timed(lambda: collect(router.generate(request)))
            if index >= 20:
                raw.append(a)
                routed.append(b)
    finally:
        router.close()
    print(f"(a2) in-process Router + RemoteBackend vs the same signed call: p50 "
          f"{statistics.median(routed):.2f} vs {statistics.median(raw):.2f} ms: the routing "
          f"layer adds {statistics.median(routed) - statistics.median(raw):.2f} ms p50, "
          f"{pct(routed, 0.99) - pct(raw, 0.99):.2f} ms p99")


def streaming(api: httpx.Client, headers: dict[str, str], direct: Direct) -> None:
    words = " ".join(f"w{i}" for i in range(STREAM_TOKENS))
    request = GenerateRequest(DEFAULT_MODEL_ID, messages=(Message("user", words),),
                              max_tokens=STREAM_TOKENS, temperature=0)
    body = {"prompt": words, "stream": True,
            "parameters": {**GREEDY, "max_tokens": STREAM_TOKENS}}
    api_gaps, direct_gaps = [], []
    for _ in range(STREAM_RUNS):
        direct_gaps.append(direct.stream_gaps(request) * 1000)
        with api.stream("POST", "/api/v1/chat/completion", json=body, headers=headers) as answer:
            api_gaps.append(_per_token(answer, lambda line: '"is_final": false' in line) * 1000)
    added = statistics.median(api_gaps) - statistics.median(direct_gaps)
    print(f"(b) streaming {STREAM_TOKENS} tokens x {STREAM_RUNS}: per token p50 direct "
          f"{statistics.median(direct_gaps):.3f} ms, through the API "
          f"{statistics.median(api_gaps):.3f} ms: the bridge adds {added:.3f} ms (goal <= 0.2)")


def failover(url: str, headers: dict[str, str], worker_pid: int) -> None:
    body = {"prompt": "Say hello in five words.", "parameters": {**GREEDY,
                                                                 "max_tokens": 8}}
    results: list[tuple[float, float, int, str]] = []  # start, end, status, backend
    lock, killed_at = threading.Lock(), [0.0]
    todo = iter(range(BATCH))

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    if next(todo, None) is None:
                        return
                started = time.perf_counter()
                answer = http.post("/api/v1/chat/completion", json=body, headers=headers)
                backend = answer.json().get("backend", "?") if answer.status_code == 200 else "-"
                with lock:
                    results.append((started, time.perf_counter(), answer.status_code, backend))
                    if len(results) == KILL_AFTER and not killed_at[0]:
                        os.killpg(worker_pid, signal.SIGKILL)
                        killed_at[0] = time.perf_counter()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = sum(status != 200 for _, _, status, _ in results)
    after = sorted(r for r in results if r[0] >= killed_at[0])
    first = after[0]
    took = (first[1] - first[0]) * 1000
    # its own generation time: the other local answers after the kill, same load, same prompt
    local_ms = statistics.median((end - start) * 1000 for start, end, *_ in after[1:])
    by_backend: dict[str, int] = {}
    for *_, backend in results:
        by_backend[backend] = by_backend.get(backend, 0) + 1
    print(f"(c) worker killed after {KILL_AFTER} of {BATCH} requests ({CLIENTS} clients): "
          f"failed {failed} (goal 0); answered by {by_backend}")
    print(f"    first request after the kill: {took:.0f} ms on {first[3]!r}; the other local "
          f"answers after it took {local_ms:.0f} ms (p50): failover added {took - local_ms:.0f} "
          f"ms (goal <= 1000)")


def _warm_local(api: httpx.Client, headers: dict[str, str], worker_url: str, secret: str) -> None:
    """Load and warm the local model (`bridge serve` does that at start)."""
    api.request("DELETE", "/api/v1/system/colab/connect", headers=headers)
    ask = {"prompt": "Say hello in five words.", "parameters": {**GREEDY,
                                                                "max_tokens": 8}}
    for _ in range(3):
        answer = api.post("/api/v1/chat/completion", json=ask, headers=headers)
        assert answer.json()["backend"] == "local", answer.text
    answer = api.post("/api/v1/system/colab/connect", headers=headers, json={
        "worker_url": worker_url, "worker_secret": secret, "name": "echo-worker"})
    assert answer.status_code == 200, answer.text


def main() -> None:
    store = ModelStore(Path(os.environ.get("BRIDGE_MODELS", ".bridge-home/models")))
    prepare_default_model(store)
    from colab_runtime.detached import start_detached

    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as tmp:
        worker = start_detached(secret, log_path=Path(tmp) / "worker.log", backend="echo")
        port, proxy_port = _free_port(), _free_port()
        env = {**os.environ, **LIMITS, "BRIDGE_ANONYMOUS_LIMIT": "1000000/minute",
               "BRIDGE_HOME": f"{tmp}/api", "BRIDGE_MODELS_HOME": str(store.root),
               "BRIDGE_LOG_LEVEL": "WARNING", "BRIDGE_WORKER_SECRET": secret,
               "BRIDGE_PREPARE_MODEL": "false"}  # the local model loads later, for (c)
        bridge = Path(sys.executable).parent / "bridge"
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        api_proc = subprocess.Popen([str(bridge), "serve", "--port", str(port)], env=env, **quiet)
        proxy_proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_remote", "--proxy", str(proxy_port),
             worker.url], env=env, **quiet)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url + "/healthz")
            _wait(f"http://127.0.0.1:{proxy_port}/")
            with httpx.Client(base_url=url, timeout=120) as api:
                creds = {"username": "bench", "password": "bench-password"}
                api.post("/api/auth/register", json={**creds, "email": "bench@example.org"})
                token = api.post("/api/auth/login", json=creds).json()["access_token"]
                headers = {"Authorization": f"Bearer {token}", "Cache-Control": "no-cache"}
                answer = api.post("/api/v1/system/colab/connect", headers=headers, json={
                    "worker_url": worker.url, "worker_secret": secret, "name": "echo-worker"})
                assert answer.status_code == 200, answer.text
                direct = Direct(worker.url, secret)
                proxy = Direct(f"http://127.0.0.1:{proxy_port}", secret)
                overhead(api, headers, direct, proxy)
                routing(direct, worker.url, secret)
                streaming(api, headers, direct)
                _warm_local(api, headers, worker.url, secret)
                failover(url, headers, worker.pid)
        finally:
            for proc in (api_proc, proxy_proc):
                proc.terminate()
                proc.wait(30)
            worker.stop()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--proxy":
        _proxy_main(int(sys.argv[2]), sys.argv[3])
    else:
        main()

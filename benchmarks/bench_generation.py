"""Through the real HTTP API: overhead vs raw generate, 8 concurrent clients, time to answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from transformers import AutoTokenizer

from benchmarks import GREEDY
from benchmarks.bench_local import LONG, PROMPTS, chat_ids, raw_generate
from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.models.convert import prepare_default_model
from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown

MAX_TOKENS = 48


def _login(http: httpx.Client) -> dict[str, str]:
    creds = {"username": "bench", "password": "bench-password"}
    http.post("/api/auth/register", json={**creds, "email": "bench@example.org"})
    token = http.post("/api/auth/login", json=creds).json()["access_token"]
    return {"Authorization": f"Bearer {token}", "Cache-Control": "no-cache"}


def _ask(http: httpx.Client, headers: dict[str, str], prompt: str) -> int:
    body = {"prompt": prompt, "parameters": {**GREEDY, "max_tokens": MAX_TOKENS}}
    answer = http.post("/api/generate", headers=headers, json=body, timeout=300).json()
    return int(answer["usage"]["completion_tokens"])


def _serve(app: Any) -> tuple[Any, str]:
    from bridge.serving import create_server

    server = create_server("127.0.0.1", 0, app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.port}"


def overhead_and_concurrency(store: ModelStore, home: Path) -> None:
    backend = LocalBackend(store, keep_alive=None, engine="transformers")
    backend.load(DEFAULT_MODEL_ID)
    app = create_app(
        {
            "home": home,
            "prepare_model": False,
            "anonymous_limit": "100000/minute",
            "tier_limits": {
                "free": "100000/minute",
                "pro": "100000/minute",
                "enterprise": "100000/minute",
            },
        },
        router=Router(backend),
        local=backend,
        store=store,
    )
    server, url = _serve(app)
    try:
        with httpx.Client(base_url=url) as http:
            headers = _login(http)
            model = backend.manager(DEFAULT_MODEL_ID).model
            tokenizer = AutoTokenizer.from_pretrained(str(store.get(DEFAULT_MODEL_ID).path))
            ids = chat_ids(tokenizer, LONG)
            _ask(http, headers, LONG)
            raw_generate(model, ids, 8)  # warm both paths

            started = time.perf_counter()
            raw_tokens = len(raw_generate(model, ids, MAX_TOKENS))
            raw_rate = raw_tokens / (time.perf_counter() - started)
            started = time.perf_counter()
            api_tokens = _ask(http, headers, LONG)
            api_rate = api_tokens / (time.perf_counter() - started)
            print(
                f"single stream: raw generate {raw_rate:.1f} tok/s ({raw_tokens} tokens), "
                f"API {api_rate:.1f} tok/s ({api_tokens} tokens)"
            )
            print(f"  ratio API / raw generate = {api_rate / raw_rate:.2f} (goal >= 0.95)")

            # Same-length stories (as bench_local's (b)), then a mix of short and long answers:
            # with the mix, short answers finish early and the batch thins out.
            workloads = {
                "8 stories": [f"{LONG} Chapter {i + 1}." for i in range(8)],
                "8 mixed prompts": [PROMPTS[i % len(PROMPTS)] + f" (variant {i})"
                                    for i in range(8)],
            }
            for name, prompts in workloads.items():
                _concurrency(http, url, headers, name, prompts)
    finally:
        server.shutdown()
        shutdown(app)
        backend.close()


def _concurrency(
    http: httpx.Client, url: str, headers: dict[str, str], name: str, prompts: list[str]
) -> None:
    """The prompts one after another, then from len(prompts) clients at once."""
    started = time.perf_counter()
    sequential = sum(_ask(http, headers, p) for p in prompts)
    seq_rate = sequential / (time.perf_counter() - started)
    counts: list[int] = []

    def client(prompt: str) -> None:
        with httpx.Client(base_url=url) as own:
            counts.append(_ask(own, headers, prompt))

    threads = [threading.Thread(target=client, args=(p,)) for p in prompts]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    par_rate = sum(counts) / (time.perf_counter() - started)
    print(f"{name}: one after another {seq_rate:.1f} tok/s aggregate; {len(prompts)} concurrent "
          f"clients {par_rate:.1f} tok/s aggregate; ratio {par_rate / seq_rate:.2f} (goal >= 3)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_to_first_answer(store: ModelStore, home: Path) -> None:
    """`bridge serve` (what `make run` starts) to the first generated answer, model converted."""
    port = _free_port()
    env = {**os.environ, "BRIDGE_HOME": str(home / "serve"), "BRIDGE_MODELS_HOME": str(store.root)}
    bridge = Path(sys.executable).parent / "bridge"
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(bridge), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            while True:
                try:
                    http.get("/healthz")
                    break
                except httpx.TransportError:
                    if time.perf_counter() - started > 120:
                        raise
                    time.sleep(0.05)
            listening = time.perf_counter() - started
            headers = _login(http)
            _ask(http, headers, "What is the capital of France?")
        total = time.perf_counter() - started
        print(
            f"bridge serve start -> listening {listening:.1f} s -> first answer {total:.1f} s "
            f"(goal < 5 s; default model on llama.cpp, straight from its GGUF)"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = ModelStore(home / "models")
        prepare_default_model(store)
        overhead_and_concurrency(store, home / "api")
        time_to_first_answer(store, home)


if __name__ == "__main__":
    main()

"""The llama.cpp engine against its native peer in the same run (issue 19): this service's API
(a llama-server subprocess under LocalBackend) vs a raw ``llama-server`` started here on the same
GGUF, binary, slots, context and threads. Prints single-stream and 8-client ratios, time to
first token at 8 clients, greedy agreement solo vs batched, and the prompt cache at work (TTFT
of a conversation's 10th turn vs its 1st); then the transformers path for reference."""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks import GREEDY
from benchmarks.bench_generation import _login, _serve
from benchmarks.bench_local import LONG, PROMPTS
from bridge.backends.engines.llama_server import default_threads, find_binary, plan
from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.models.convert import find_default_gguf, prepare_default_model
from bridge.models.store import ModelStore
from bridge.router import Router
from bridge.types import GenerateRequest, collect
from local_api import create_app, shutdown

TOKENS, CLIENTS = 128, 8
UNLIMITED = {t: "100000/minute" for t in ("free", "pro", "enterprise")}
AGREE = [*PROMPTS, "The capital of France is", "Name three colors.", "What is 7 * 8?",
         "Write a haiku about rain.", "List the days of the week."]  # fmt: skip


def raw_server(gguf: Path, parallel: int, context: int, threads: int) -> tuple[Any, str]:
    """llama.cpp's own llama-server on a free loopback port, as a user would start it."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    binary = find_binary()
    assert binary is not None, "make llama-server first"
    process = subprocess.Popen(
        [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
         "-c", str(context * parallel), "-np", str(parallel), "-t", str(threads),
         "-tb", str(threads), "--no-webui", "--jinja", "--no-kv-unified"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("raw llama-server did not start")


def chat(url: str, headers: dict[str, str], messages: list[dict[str, str]], max_tokens: int,
         ) -> tuple[float, float, int, str]:  # fmt: skip
    """One streamed /v1/chat/completions: (seconds to first content, total seconds, tokens,
    text). Same body for the API and the raw server (greedy, no penalty, cache bypassed)."""
    body = {"model": DEFAULT_MODEL_ID, "stream": True, "max_tokens": max_tokens,
            "temperature": 0, "frequency_penalty": 0, "presence_penalty": 0,
            "stream_options": {"include_usage": True}, "messages": messages}  # fmt: skip
    if headers:  # this service: no catalog repetition penalty (llama-server's default is 1.0)
        body["repetition_penalty"] = GREEDY["repetition_penalty"]
    started, ttft, tokens, text = time.perf_counter(), None, 0, ""
    with httpx.Client(base_url=url, timeout=600) as http, \
            http.stream("POST", "/v1/chat/completions", headers=headers, json=body) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            piece = ((chunk.get("choices") or [{}])[0].get("delta") or {}).get("content") or ""
            if ttft is None and piece:
                ttft = time.perf_counter() - started
            text += piece
            tokens = int((chunk.get("usage") or {}).get("completion_tokens", tokens))
    return (ttft if ttft is not None else float("nan"), time.perf_counter() - started, tokens,
            text)  # fmt: skip


def single(ask: Callable[[], tuple[float, float, int, str]]) -> float:
    """Best tok/s of two long greedy answers after one warm-up."""
    ask()
    return max(tokens / seconds for _, seconds, tokens, _ in (ask(), ask()))


def crowd(url: str, headers: dict[str, str]) -> tuple[float, float, float]:
    """CLIENTS streams at once, distinct prompts: (aggregate tok/s, TTFT p50, p99)."""
    results: list[tuple[float, float, int, str]] = []

    def one(i: int) -> None:
        prompt = f"{PROMPTS[i % len(PROMPTS)]} (story {i})"
        results.append(chat(url, headers, [{"role": "user", "content": prompt}], TOKENS))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    aggregate = sum(r[2] for r in results) / (time.perf_counter() - started)
    ttfts = sorted(r[0] for r in results)
    return aggregate, statistics.median(ttfts), ttfts[-1]


def batched_agreement(url: str, headers: dict[str, str], tokens: int = 48) -> tuple[int, int]:
    """Greedy answers alone vs among CLIENTS - 1 others: (identical, prompts)."""
    def ask(prompt: str) -> str:
        return chat(url, headers, [{"role": "user", "content": prompt}], tokens)[3]

    solo = {p: ask(p) for p in AGREE}
    together: dict[str, str] = {}
    for start in range(0, len(AGREE), CLIENTS):
        group = AGREE[start:start + CLIENTS]
        fillers = [f"Tell a story about a {w}." for w in ("fox", "ship", "clock", "tree",
                                                          "river", "lamp", "bird")]  # fmt: skip
        threads = [threading.Thread(target=lambda p=p: together.__setitem__(p, ask(p)))
                   for p in group]  # fmt: skip
        threads += [threading.Thread(target=ask, args=(f,))
                    for f in fillers[:CLIENTS - len(group)]]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return sum(solo[p] == together[p] for p in AGREE), len(AGREE)


def conversation(url: str, headers: dict[str, str], turns: int = 10) -> tuple[float, float]:
    """TTFT of a conversation's 1st and ``turns``-th turn (each turn resends the history)."""
    messages: list[dict[str, str]] = []
    firsts = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Tell me fact number {turn + 1} about "
                                                    "the sea, in two sentences."})  # fmt: skip
        ttft, _, _, text = chat(url, headers, messages, 48)
        firsts.append(ttft)
        messages.append({"role": "assistant", "content": text})
    return firsts[0], firsts[-1]


def api_bench(store: ModelStore, home: Path) -> None:
    gguf = find_default_gguf()
    how = plan(gguf, parallel=CLIENTS, threads=default_threads())
    llama = LocalBackend(ModelStore(home / "gguf"), keep_alive=None, engine="llama.cpp",
                         threads=how.threads, parallel=how.parallel)  # fmt: skip
    llama.load(DEFAULT_MODEL_ID)
    app = create_app({"home": home, "prepare_model": False, "anonymous_limit": "100000/minute",
                      "tier_limits": UNLIMITED}, router=Router(llama), local=llama, store=store)
    server, url = _serve(app)
    process, raw_url = raw_server(gguf, how.parallel, how.context, how.threads)
    long = [{"role": "user", "content": LONG}]
    try:
        with httpx.Client(base_url=url) as http:
            headers = _login(http)
        print(f"same GGUF ({gguf.name}), same llama-server binary, {how.parallel} slots x "
              f"{how.context} tokens, {how.threads} threads, greedy, answer cache bypassed")
        api = single(lambda: chat(url, headers, long, TOKENS))
        raw = single(lambda: chat(raw_url, {}, long, TOKENS))
        print(f"single stream: API {api:.1f} tok/s, raw llama-server {raw:.1f} tok/s: "
              f"ratio {api / raw:.2f} (goal >= 0.95)")
        a_agg, a50, a99 = crowd(url, headers)
        r_agg, r50, r99 = crowd(raw_url, {})
        print(f"{CLIENTS} clients: API {a_agg:.1f} tok/s aggregate, raw {r_agg:.1f} tok/s: "
              f"ratio {a_agg / r_agg:.2f} (goal >= 0.90)")
        print(f"  time to first token p50/p99: API {a50:.2f}/{a99:.2f} s, raw {r50:.2f}/"
              f"{r99:.2f} s (goal: API p99 <= {2 * r99 + 0.2:.2f} s)")
        same, total = batched_agreement(url, headers)
        print(f"greedy agreement solo vs among {CLIENTS - 1} others (batched slots): "
              f"{same}/{total} identical (exact mode: BRIDGE_NUM_PARALLEL=1)")
        first, tenth = conversation(url, headers)
        print(f"prompt cache: TTFT of a conversation's 1st turn {first:.3f} s, 10th turn "
              f"{tenth:.3f} s")
        print(f"  engine: {llama.runtime_info['llama_servers'][DEFAULT_MODEL_ID]}")
        transformers = LocalBackend(store, keep_alive=None, engine="transformers")
        transformers.load(DEFAULT_MODEL_ID)
        request = GenerateRequest(DEFAULT_MODEL_ID, prompt=LONG, max_tokens=TOKENS, **GREEDY)
        collect(transformers.generate(request))  # warm
        started = time.perf_counter()
        hf_tokens = collect(transformers.generate(request)).done.completion_tokens
        hf = hf_tokens / (time.perf_counter() - started)
        transformers.close()
        print(f"transformers fp32 path (reference): {hf:.1f} tok/s; API on llama.cpp = "
              f"{api / hf:.1f}x")
    finally:
        process.terminate()
        process.wait(10)
        server.shutdown()
        shutdown(app)
        llama.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = ModelStore(home / "models")
        prepare_default_model(store)
        api_bench(store, home / "api")


if __name__ == "__main__":
    main()

"""The two local engines side by side on the default model (issue 12): API on llama.cpp vs raw
``llama_cpp.Llama`` and vs the transformers path, 8 concurrent clients with time to first
token, and greedy agreement between the engines on the same GGUF weights."""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import GREEDY
from benchmarks.bench_generation import _login, _serve
from benchmarks.bench_local import LONG, PROMPTS
from bridge.backends.engines.llama_cpp import default_threads
from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.models.convert import find_default_gguf, prepare_default_model
from bridge.models.store import ModelStore
from bridge.router import Router
from bridge.types import GenerateRequest, collect
from local_api import create_app, shutdown

TOKENS = 128
UNLIMITED = {t: "100000/minute" for t in ("free", "pro", "enterprise")}


def raw_llama(prompt_ids: list[int], threads: int) -> float:
    """tok/s of ``llama_cpp.Llama.generate`` itself: greedy, same GGUF, same threads."""
    from llama_cpp import Llama

    llm = Llama(str(find_default_gguf()), n_ctx=4096, n_threads=threads, verbose=False)
    try:
        rates = []
        for _ in range(2):
            llm.reset()
            started, count = time.perf_counter(), 0
            for _token in llm.generate(prompt_ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0):
                count += 1
                if count >= TOKENS:
                    break
            rates.append(count / (time.perf_counter() - started))
        return max(rates)
    finally:
        llm.close()


def api_rate(http: httpx.Client, headers: dict[str, str], prompt: str) -> tuple[float, int]:
    """tok/s of one greedy answer through /api/generate (ignoring EOS is not offered: a long
    story prompt keeps the default model going)."""
    body = {"prompt": prompt, "parameters": {**GREEDY, "max_tokens": TOKENS}}
    started = time.perf_counter()
    answer = http.post("/api/generate", headers=headers, json=body, timeout=600).json()
    tokens = int(answer["usage"]["completion_tokens"])
    return tokens / (time.perf_counter() - started), tokens


def first_token(url: str, headers: dict[str, str], prompt: str, out: list[tuple[float, int]],
                ) -> None:  # fmt: skip
    """Stream one chat completion; record (seconds to first content, tokens)."""
    body = {"model": DEFAULT_MODEL_ID, "stream": True, "temperature": 0, "max_tokens": 48,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
    started, ttft, tokens = time.perf_counter(), None, 0
    with httpx.Client(base_url=url, timeout=600) as http, \
            http.stream("POST", "/v1/chat/completions", headers=headers, json=body) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            delta = (chunk.get("choices") or [{}])[0].get("delta", {})
            if ttft is None and delta.get("content"):
                ttft = time.perf_counter() - started
            tokens = int((chunk.get("usage") or {}).get("completion_tokens", tokens))
    out.append((ttft if ttft is not None else float("nan"), tokens))


def api_bench(store: ModelStore, home: Path) -> None:
    threads = default_threads()
    llama = LocalBackend(ModelStore(home / "gguf"), keep_alive=None, engine="llama.cpp",
                         threads=threads)  # fmt: skip
    llama.load(DEFAULT_MODEL_ID)
    app = create_app({"home": home, "prepare_model": False, "anonymous_limit": "100000/minute",
                      "tier_limits": UNLIMITED}, router=Router(llama), local=llama, store=store)
    server, url = _serve(app)
    try:
        with httpx.Client(base_url=url) as http:
            headers = _login(http)
            api_rate(http, headers, LONG)  # warm
            api, api_tokens = max(api_rate(http, headers, LONG) for _ in range(2))
            engine: Any = llama._slots[DEFAULT_MODEL_ID].engine
            ids = engine.tokenize(engine.template([{"role": "user", "content": LONG}]))
            raw = raw_llama(ids, threads)
            transformers = LocalBackend(store, keep_alive=None, engine="transformers")
            transformers.load(DEFAULT_MODEL_ID)
            request = GenerateRequest(DEFAULT_MODEL_ID, prompt=LONG, temperature=0,
                                      max_tokens=TOKENS)  # fmt: skip
            collect(transformers.generate(request))  # warm
            started = time.perf_counter()
            hf_tokens = collect(transformers.generate(request)).done.completion_tokens
            hf = hf_tokens / (time.perf_counter() - started)
            print(f"single stream, {threads} threads, greedy up to {TOKENS} tokens:")
            print(f"  API on llama.cpp {api:.1f} tok/s ({api_tokens} tokens); raw llama_cpp.Llama "
                  f"{raw:.1f} tok/s; transformers fp32 path {hf:.1f} tok/s ({hf_tokens} tokens)")
            print(f"  ratio API / raw llama.cpp = {api / raw:.2f} (goal >= 0.9); "
                  f"API / transformers = {api / hf:.1f}x (expect >= 3x)")
            agreement(llama, transformers)
            transformers.close()
            results: list[tuple[float, int]] = []
            clients = [threading.Thread(target=first_token, args=(
                url, headers, f"{PROMPTS[i % len(PROMPTS)]} (variant {i})", results))
                for i in range(8)]  # fmt: skip
            started = time.perf_counter()
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            aggregate = sum(n for _, n in results) / (time.perf_counter() - started)
            ttfts = sorted(t for t, _ in results)
            p99 = ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))]
            print(f"8 concurrent clients on llama.cpp (FIFO queue): {aggregate:.1f} tok/s "
                  f"aggregate = {aggregate / api:.2f}x single stream; time to first token "
                  f"p50 {statistics.median(ttfts):.2f} s, p99 {p99:.2f} s")
            print(f"  queue: {llama.runtime_info['queues'][DEFAULT_MODEL_ID]}")
    finally:
        server.shutdown()
        shutdown(app)
        llama.close()


def agreement(llama: LocalBackend, transformers: LocalBackend, tokens: int = 32) -> None:
    """Greedy answers of both engines on a fixed prompt set (same GGUF weights)."""
    prompts = [*PROMPTS, "The capital of France is", "Name three colors.", "What is 7 * 8?"]
    same = words = total = 0
    for prompt in prompts:
        chat = not prompt.startswith("The capital")
        request = GenerateRequest(DEFAULT_MODEL_ID, prompt=prompt, temperature=0,
                                  max_tokens=tokens, chat=chat)  # fmt: skip
        a = collect(llama.generate(request)).text.split()
        b = collect(transformers.generate(request)).text.split()
        same += a == b
        prefix = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                      min(len(a), len(b)))  # fmt: skip
        words, total = words + prefix, total + max(len(a), len(b), 1)
    print(f"greedy agreement, llama.cpp vs transformers fp32 on the same GGUF weights, "
          f"{len(prompts)} prompts x {tokens} tokens: {same}/{len(prompts)} identical answers; "
          f"{words / total:.0%} of words agree before the first difference")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = ModelStore(home / "models")
        prepare_default_model(store)
        api_bench(store, home / "api")


if __name__ == "__main__":
    main()

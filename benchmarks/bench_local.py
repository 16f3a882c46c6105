"""LocalBackend on this machine: overhead vs raw generate, batching gain, CPU precision table."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import torch

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.errors import BridgeError
from bridge.models.convert import load_model, prepare_default_model
from bridge.models.store import ModelStore
from bridge.types import GenerateRequest, collect

PROMPTS = (
    "What is the capital of France?",
    "Explain photosynthesis in two sentences.",
    "Write a short poem about the sea.",
    "List three uses of a paperclip.",
    "Why is the sky blue?",
)
LONG = "Write a detailed story about a dragon who learns to bake bread."
PRECISIONS = ("fp32", "bf16", "int8-dynamic", "8bit", "4bit")


def request(prompt: str, max_tokens: int) -> GenerateRequest:
    """A greedy chat request for the default model."""
    return GenerateRequest(DEFAULT_MODEL_ID, prompt=prompt, temperature=0, max_tokens=max_tokens)


def chat_ids(tokenizer: Any, prompt: str) -> torch.Tensor:
    """The prompt rendered with the chat template, as a [1, n] tensor."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    return torch.tensor([tokenizer.encode(text, add_special_tokens=False)])


def raw_generate(model: Any, ids: torch.Tensor, max_tokens: int) -> list[int]:
    """Greedy ``model.generate`` with no extras: the baseline."""
    with torch.inference_mode():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
            do_sample=False, top_p=None, top_k=None, temperature=None,
        )  # fmt: skip
    return [int(t) for t in out[0, ids.shape[1] :]]


def single_stream(backend: LocalBackend, tokenizer: Any, max_tokens: int = 64) -> None:
    """(a) One stream through LocalBackend vs raw model.generate on the same model object."""
    model = backend.manager(DEFAULT_MODEL_ID).model
    ids = chat_ids(tokenizer, LONG)
    collect(backend.generate(request(LONG, 8)))
    raw_generate(model, ids, 8)  # warm both paths
    started = time.perf_counter()
    done = collect(backend.generate(request(LONG, max_tokens))).done
    ours = done.completion_tokens / (time.perf_counter() - started)
    started = time.perf_counter()
    raw = len(raw_generate(model, ids, max_tokens)) / (time.perf_counter() - started)
    print(f"(a) single stream, {max_tokens} tokens: LocalBackend {ours:.1f} tok/s, raw generate "
          f"{raw:.1f} tok/s, ratio {ours / raw:.2f} (goal >= 0.95)")  # fmt: skip


def concurrent(backend: LocalBackend, n: int = 8, max_tokens: int = 48) -> None:
    """(b) n threads at once vs the same n requests one after another, both via LocalBackend."""
    prompts = [f"{LONG} Chapter {i + 1}." for i in range(n)]
    started = time.perf_counter()
    serial = sum(collect(backend.generate(request(p, max_tokens))).done.completion_tokens
                 for p in prompts)  # fmt: skip
    serial_rate = serial / (time.perf_counter() - started)
    counts: list[int] = []

    def run(prompt: str) -> None:
        counts.append(collect(backend.generate(request(prompt, max_tokens))).done.completion_tokens)

    threads = [threading.Thread(target=run, args=(p,)) for p in prompts]
    manager = backend.manager(DEFAULT_MODEL_ID)
    steps, started = getattr(manager, "current_batch", 0), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = sum(counts) / (time.perf_counter() - started)
    print(f"(b) {n} requests x {max_tokens} tokens: one after another {serial_rate:.1f} tok/s, "
          f"{n} threads {rate:.1f} tok/s aggregate ({manager.current_batch - steps} batched steps "
          f"for {sum(counts)} tokens), ratio {rate / serial_rate:.2f}x (goal >= 3x)")  # fmt: skip


def precision_table(path: str, tokenizer: Any, max_tokens: int = 32) -> None:
    """(c) tok/s per precision on CPU and greedy agreement with fp32 over PROMPTS."""
    inputs = [chat_ids(tokenizer, p) for p in PROMPTS]
    reference: list[list[int]] = []
    print(f"(c) CPU precision, greedy, {len(PROMPTS)} prompts x {max_tokens} tokens")
    print(f"    {'precision':<13} {'tok/s':>7}  {'same answer':>11}  {'same tokens':>11}")
    for precision in PRECISIONS:
        try:
            model = load_model(path, "cpu", "none" if precision == "fp32" else precision)
        except (BridgeError, ImportError, RuntimeError) as exc:
            print(f"    {precision:<13} n/a: {str(exc).splitlines()[0][:110]}")
            continue
        raw_generate(model, inputs[0], 4)
        started, outputs = time.perf_counter(), [raw_generate(model, i, max_tokens) for i in inputs]
        rate = sum(map(len, outputs)) / (time.perf_counter() - started)
        reference = reference or outputs
        same = sum(o == r for o, r in zip(outputs, reference, strict=True))
        prefix = [common_prefix(o, r) for o, r in zip(outputs, reference, strict=True)]
        shared = sum(prefix) / max(1, sum(len(r) for r in reference))
        print(f"    {precision:<13} {rate:7.1f}  {same:>5}/{len(PROMPTS):<5}  {shared:>10.0%}")
        del model


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two answers share."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main() -> None:
    """Run (a), (b) and (c) once on the default model and print the numbers."""
    root = Path(os.environ.get("BRIDGE_MODELS", ".bridge-home/models"))
    store = ModelStore(root)
    info = prepare_default_model(store)
    backend = LocalBackend(store, keep_alive=None, engine="transformers")
    try:
        print(f"model {info.id}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"load {backend.load(DEFAULT_MODEL_ID, device='cpu'):.2f} s")  # fmt: skip
        tokenizer = _tokenizer(str(info.path))
        single_stream(backend, tokenizer)
        concurrent(backend)
    finally:
        backend.close()
    precision_table(str(info.path), tokenizer)


def _tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


if __name__ == "__main__":
    main()

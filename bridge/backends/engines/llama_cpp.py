"""The llama.cpp engine: a GGUF model served by its own ``llama-server`` subprocess.

Requests go to the server's native ``/completion`` endpoint as prompt token ids (this service
renders the chat template and checks the context first, as on every engine) and stream back
text pieces. The server decodes them with continuous batching over its parallel slots and keeps
a prompt cache per slot (``cache_prompt``), so concurrent requests no longer wait in a queue
in front of one sequence, and a conversation's next turn re-reads only what is new.

Sampling: llama.cpp's own chain with min_p and typical_p off, so temperature, top_k, top_p and
the penalties mean what they mean on transformers — except the penalties' window: llama.cpp
penalises the last ``repeat_last_n`` = 64 tokens (its default), transformers the whole text.
temperature 0 is greedy. A request with no seed that samples gets a fresh random seed.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
from pathlib import Path
from typing import Any

import httpx

from bridge.backends.engines import Cancel, Piece
from bridge.backends.engines.llama_server import LlamaServer, Plan
from bridge.errors import BackendUnavailable, ValidationError
from bridge.structured import parsed
from bridge.types import GenerateRequest

REPEAT_LAST_N = 64  # llama.cpp's default penalty window (common/common.h penalty_last_n)


def _refusal(raw: bytes) -> str:
    """The message of llama-server's 400 (``{"error": {"message": ...}}``), e.g. a schema
    keyword its json-schema-to-grammar cannot convert."""
    try:
        message = str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = raw.decode(errors="replace")
    return f"The JSON schema cannot be enforced by llama.cpp: {message}"[:500]
def log_probs(entries: Any, top: int) -> list[dict[str, Any]]:
    """llama-server's ``completion_probabilities`` (tools/server: ``id, token, bytes, logprob,
    top_logprobs``) in OpenAI's shape, ``top`` alternatives each (the server sends at least 1)."""
    def one(e: dict[str, Any]) -> dict[str, Any]:
        return {"token": str(e.get("token", "")), "logprob": float(e.get("logprob", 0.0)),
                "bytes": list(e.get("bytes") or [])}  # fmt: skip

    return [{**one(e), "top_logprobs": [one(t) for t in (e.get("top_logprobs") or [])[:top]]}
            for e in entries if isinstance(e, dict)]  # fmt: skip


class LlamaCppEngine:
    """One GGUF model in a llama-server subprocess (see llama_server.py)."""

    name = "llama.cpp"
    eos: frozenset[int] = frozenset()  # the server ends at end-of-generation itself

    def __init__(self, gguf: Path, how: Plan, *, binary: str = "",
                 cache_prompt: bool = True) -> None:  # fmt: skip
        self.server = LlamaServer(gguf, how, binary=binary)
        self.plan, self.cache_prompt = how, cache_prompt
        self.context, self.trained_context = how.context, how.trained
        self.settings = (self.name, "cpu", gguf.name)

    def alive(self) -> bool:
        """False once the subprocess has died (crash, OOM-kill): LocalBackend restarts it."""
        return self.server.alive()

    def stats(self) -> dict[str, Any]:
        """Slots, per-slot context, threads, the subprocess, and from the server's own
        ``/metrics``: requests decoding now and waiting for a slot (``/system/status``)."""
        found = {"parallel": self.plan.parallel, "context": self.plan.context,
                 "threads": self.plan.threads, "pid": self.server.pid,
                 "state": self.server.exit_reason(), "processing": 0, "deferred": 0}
        try:
            text = self.server.client.get("/metrics", timeout=2.0).text
        except (httpx.HTTPError, RuntimeError):  # RuntimeError: unloaded meanwhile (client closed)
            return found
        for line in text.splitlines():  # Prometheus text: "llamacpp:requests_deferred 0"
            name, _, value = line.partition(" ")
            key = name.removeprefix("llamacpp:requests_")
            if key in ("processing", "deferred") and value:
                found[key] = int(float(value))
        return found

    def tokenize(self, text: str) -> list[int]:
        body = {"content": text, "add_special": False, "parse_special": True}
        return [int(t) for t in self.server.post("/tokenize", body)["tokens"]]

    def detokenize(self, ids: list[int]) -> str:
        try:
            return str(self.server.post("/detokenize", {"tokens": ids})["content"])
        except BackendUnavailable as exc:  # the server answers 500 for an id past its vocab
            if not self.alive():
                raise
            raise ValidationError("tokens: not ids of this model's vocabulary",
                                  details={"field": "tokens"}) from exc  # fmt: skip

    def template(self, messages: list[dict[str, str]]) -> str:
        """The model's own chat template (its GGUF's Jinja, rendered by the server)."""
        return str(self.server.post("/apply-template", {"messages": messages})["prompt"])

    def body(self, request: GenerateRequest, ids: list[int]) -> dict[str, Any]:
        """The ``/completion`` request: prompt ids and the sampling chain (module docstring)."""
        r, sample = request, request.temperature > 0
        seed = r.seed if r.seed is not None else secrets.randbits(31)
        # the server turns the schema into a grammar itself (json-schema-to-grammar)
        constraint = {"json_schema": parsed(r.json_schema)} if r.json_schema else {}
        return {**constraint,
            "prompt": ids, "n_predict": r.max_tokens, "stream": True, "return_tokens": True,
            "cache_prompt": self.cache_prompt, "temperature": float(r.temperature) if sample
            else 0.0, "top_k": int(r.top_k), "top_p": float(r.top_p), "min_p": 0.0,
            "typical_p": 1.0, "repeat_penalty": float(r.repetition_penalty),
            "repeat_last_n": REPEAT_LAST_N, "frequency_penalty": float(r.frequency_penalty),
            "presence_penalty": float(r.presence_penalty), "seed": int(seed) if sample else 0,
            # the server's per-token probabilities (completion_probabilities), as log-probs
            # of the distribution before sampling (post_sampling_probs false)
            **({"n_probs": max(1, r.logprobs), "post_sampling_probs": False}
               if r.logprobs is not None else {}),
        }  # fmt: skip

    def submit(self, request: GenerateRequest, ids: list[int], box: queue.Queue[Any]) -> Cancel:
        """Stream on a thread: cumulative Pieces on ``box``, then None (or an error)."""
        if not self.alive():
            raise RuntimeError(self.server.fault(RuntimeError("not running")))
        cancelled = threading.Event()
        held: list[httpx.Response] = []

        def run() -> None:
            try:
                self._stream(self.body(request, ids), box, cancelled, held, request.logprobs)
                box.put(None)
            except Exception as exc:  # raised in the consumer, unless it went away
                if not cancelled.is_set():
                    box.put(exc if isinstance(exc, BackendUnavailable | ValidationError)
                            else BackendUnavailable(self.server.fault(exc)))  # fmt: skip

        def cancel(_finished: bool) -> None:
            cancelled.set()
            for response in held:  # closing the stream makes the server cancel its task
                try:
                    response.close()
                except Exception:  # noqa: S110 - closing a stream another thread reads
                    pass

        threading.Thread(target=run, name="llama-cpp-stream", daemon=True).start()
        return cancel

    def _stream(self, body: dict[str, Any], box: queue.Queue[Any], cancelled: threading.Event,
                held: list[httpx.Response], top: int | None = None) -> None:  # fmt: skip
        text, count = "", 0
        probs: list[dict[str, Any]] = []
        with self.server.client.stream("POST", "/completion", json=body) as response:
            held.append(response)
            if response.status_code == 400 and body.get("json_schema"):
                raise ValidationError(_refusal(response.read()), details={"field": "json_schema"})
            if response.status_code != 200:
                raise BackendUnavailable(f"llama-server answered {response.status_code}: "
                                         f"{response.read().decode(errors='replace')[:300]}")
            for line in response.iter_lines():
                if cancelled.is_set():
                    return
                if not line.startswith("data: "):
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise BackendUnavailable(f"llama-server: {chunk['error']}"[:400])
                text += chunk.get("content", "")
                if top is not None:
                    probs.extend(log_probs(chunk.get("completion_probabilities") or (), top))
                count += len(chunk.get("tokens") or ())
                eos = chunk.get("stop_type") == "eos"
                count = max(count, int(chunk.get("tokens_predicted", 0)) - eos)
                box.put(Piece(count, text, eos=eos, final=bool(chunk.get("stop")),
                              probs=tuple(probs)))
                if chunk.get("stop"):
                    return
        if not cancelled.is_set():
            raise BackendUnavailable(self.server.fault(EOFError("the stream ended early")))

    def close(self) -> None:
        """Stop the subprocess (streams still reading get a clear error)."""
        self.server.close()

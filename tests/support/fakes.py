"""Fakes that behave: a backend with canned answers and a history, a settable clock."""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from bridge.embeddings import Embeddings, EmbedRequest
from bridge.errors import BackendUnavailable
from bridge.types import Done, Event, GenerateRequest, Token


def words(text: str) -> list[str]:
    """How the fake splits an answer into tokens: one word (with its leading space) each."""
    return re.findall(r"\s*\S+", text)


class FakeBackend:
    """A Backend answering from a queue of canned texts, recording every request.

    Knobs (attributes, change them between calls): ``fail`` (raise before the first token),
    ``die_after`` (raise after N tokens), ``hang_after`` (block after N tokens until
    ``release()``), ``healthy`` (what ready()/probe() say). A request with a ``prefill``
    that starts the answer gets the rest of it, like a model continuing a text.
    """

    def __init__(
        self,
        name: str = "fake",
        answers: Iterable[str] = (),
        *,
        default: str = "Hello from the fake backend.",
        models: list[str] | None = None,
        kind: str = "worker",
    ) -> None:
        self.name = name
        self.kind = kind
        self.url = f"fake://{name}"
        self.answers: deque[str] = deque(answers)
        self.default = default
        self.models = list(models or [])
        self.history: list[GenerateRequest] = []
        self.loads: list[tuple[str, str]] = []
        self.fail: BaseException | None = None
        self.die_after: int | None = None
        self.hang_after: int | None = None
        self.healthy = True
        self.probes = 0
        self.probed = threading.Event()
        self.closed = False
        self.hanging = threading.Event()
        self._release = threading.Event()

    def queue(self, *answers: str) -> None:
        """Add canned answers, served first in, first out."""
        self.answers.extend(answers)

    def ready(self) -> bool:
        return self.healthy

    def probe(self) -> dict[str, Any]:
        """Like RemoteBackend.probe: raises when unhealthy."""
        self.probes += 1
        self.probed.set()
        if not self.healthy:
            raise BackendUnavailable(f"{self.name} is down")
        return {"healthy": True, "latency_ms": 1.0, "models": self.models, "runtime_info": {}}

    def release(self) -> None:
        """Let a hanging generate() go on."""
        self._release.set()

    def close(self) -> None:
        self.closed = True
        self.release()

    def load(self, model_id: str, quantization: str = "none") -> float:
        self.loads.append((model_id, quantization))
        self.models.append(model_id)
        return 0.25

    def generate(self, request: GenerateRequest) -> Iterator[Event]:
        self.history.append(request)
        answer = self.answers.popleft() if self.answers else self.default
        if request.prefill and answer.startswith(request.prefill):
            answer = answer[len(request.prefill) :]
        tokens = words(answer)[: request.max_tokens]
        if self.fail is not None:
            raise self.fail
        for index, token in enumerate(tokens):
            if index == self.die_after:
                raise BackendUnavailable(f"{self.name} died after {index} tokens")
            if index == self.hang_after:
                self.hanging.set()
                self._release.wait(timeout=30)
            yield Token(token)
        finish = "length" if len(tokens) == request.max_tokens else "stop"
        yield Done(len(request.prompt.split()), len(tokens), finish, backend=self.name)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LocalFake(FakeBackend):
    """The fake standing where LocalBackend does: it also loads and unloads models."""

    def __init__(self, default: str = "Hello from the fake backend.", *,
                 loaded: bool = False) -> None:
        from bridge.config import DEFAULT_MODEL_ID

        super().__init__("local", kind="local", models=[DEFAULT_MODEL_ID], default=default)
        self.in_memory: set[str] = {DEFAULT_MODEL_ID} if loaded else set()

    def load(self, model_id: str, device: str = "auto", quantization: str = "none",
             **options: Any) -> float:  # fmt: skip
        """``options``: LocalBackend.load's engine, parallel, context (accepted, as there)."""
        self.in_memory.add(model_id)
        return 0.01

    def unload(self, model_id: str) -> None:
        self.in_memory.discard(model_id)

    def loaded_models(self) -> list[str]:
        return sorted(self.in_memory)

    def tokenize(self, model_id: str, text: str = "",
                 messages: list[dict[str, str]] | None = None) -> tuple[list[int], int]:
        """Stand-in ids: one per word (its length), a context of 2048."""
        words = (text or " ".join(m["content"] for m in messages or [])).split()
        return [len(w) for w in words], 2048

    def detokenize(self, model_id: str, ids: list[int]) -> str:
        return " ".join("x" * min(i, 8) for i in ids)

    def embed(self, request: EmbedRequest) -> Embeddings:
        """Deterministic stand-in vectors: [characters, words, 1.0] per input, normalized."""
        if self.fail is not None:
            raise self.fail
        vectors = []
        for text in request.inputs:
            raw = [float(len(text)), float(len(text.split())), 1.0]
            norm = sum(x * x for x in raw) ** 0.5
            vectors.append([x / norm for x in raw])
        return Embeddings(vectors, sum(len(t.split()) + 2 for t in request.inputs),
                          engine="fake")

"""What tests/local_api/test_surfaces.py runs one request through: a fake with the knobs the
drift cases need, the outcome of one call, and how each HTTP dialect is read back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from bridge.errors import ContextLengthExceeded
from bridge.types import Event, GenerateRequest
from colab_runtime.worker import WorkerServer
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake


class SurfaceFake(LocalFake):
    """LocalFake with two more knobs: ``empty`` (a stream with no events at all) and
    ``context`` (words that fit; more raise ContextLengthExceeded, as an engine does)."""

    empty = False
    context: int | None = None

    def generate(self, request: GenerateRequest) -> Iterator[Event]:
        words = sum(len(m.content.split()) for m in request.messages) + len(request.prompt.split())
        if self.context is not None and words + request.max_tokens > self.context:
            raise ContextLengthExceeded(
                f"context {self.context}: prompt {words} + max_tokens {request.max_tokens}",
                details={"prompt_tokens": words, "max_tokens": request.max_tokens,
                         "context": self.context})
        if self.empty:
            self.history.append(request)
            return iter(())
        return super().generate(request)


@dataclass
class Outcome:
    status: int
    code: str | None  # the error's code, in whatever shape the dialect gives it
    text: str = ""
    cache: str | None = None


@dataclass
class Ctx:
    http: httpx.Client
    key: str
    server: LiveServer
    worker: WorkerServer


# Ollama's errors carry a status and words, no code: the status says which (the words tell
# a context overflow from another 400, in the message errors.py writes for it).
_OLLAMA = {400: "VALIDATION_ERROR", 401: "UNAUTHORIZED", 404: "MODEL_NOT_FOUND",
           503: "BACKEND_UNAVAILABLE"}


def code_of(body: Any, status: int = 0) -> str | None:
    """The envelope's code, OpenAI's (null for a plain invalid request, as OpenAI's), or
    what Ollama's status and message say."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        if status == 400 and "exceeds the context length" in error:
            return "CONTEXT_LENGTH_EXCEEDED"
        return _OLLAMA.get(status, "INTERNAL_ERROR")
    if not isinstance(error, dict):
        return None
    if error.get("code") is None and error.get("type") == "invalid_request_error":
        return "VALIDATION_ERROR"
    return str(error.get("code"))


def http_surface(path: str, encode: Callable[[str, dict[str, Any]], dict[str, Any]],
                 text_of: Callable[[dict[str, Any]], str]) -> Callable[..., Outcome]:
    """A caller of one HTTP dialect (the body always says ``stream``: Ollama streams unless
    told ``false``)."""
    def call(ctx: Ctx, prompt: str, params: dict[str, Any], *, stream: bool = False,
             raw: str | None = None) -> Outcome:
        body = encode(prompt, params)
        data = raw if raw is not None else json.dumps({**body, "stream": stream})
        r = ctx.http.post(path, content=data, headers={"Authorization": f"Bearer {ctx.key}",
                                                       "Content-Type": "application/json"})
        if r.status_code != 200:
            return Outcome(r.status_code, code_of(r.json(), r.status_code))
        if not stream:
            return Outcome(200, None, text_of(r.json()), r.headers.get("X-Cache"))
        return Outcome(200, None, joined(r.text), r.headers.get("X-Cache"))
    return call


def joined(text: str) -> str:
    """The tokens of an NDJSON or SSE stream (FT's, OpenAI's or Ollama's), joined."""
    out = []
    for line in text.splitlines():
        line = line.removeprefix("data: ")
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        if "token" in obj and not obj.get("is_final"):
            out.append(obj["token"])
        if obj.get("done") is False:
            out.append(obj.get("response") or (obj.get("message") or {}).get("content") or "")
        for choice in obj.get("choices") or []:
            out.append((choice.get("delta") or {}).get("content") or choice.get("text") or "")
    return "".join(out)

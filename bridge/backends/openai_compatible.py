"""OpenAIBackend: any OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp) as a Backend.

Chat requests stream ``/v1/chat/completions``, plain prompts ``/v1/completions`` (SSE).
``top_k`` is not part of the OpenAI API and is not sent. A failover ``prefill`` is sent as
a trailing assistant message (chat) or appended to the prompt (completions).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from bridge.embeddings import Embeddings, EmbedRequest
from bridge.errors import BackendUnavailable, BridgeError, ModelNotFound, ValidationError
from bridge.types import Done, Event, GenerateRequest, Token
from bridge.urls import split_userinfo


def _v1(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


class OpenAIBackend:
    """A Backend that streams from an OpenAI-compatible HTTP server."""

    kind = "openai"

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
    ) -> None:
        self.name = name
        clean, userinfo = split_userinfo(base_url)  # user:password is sent as auth, never shown
        self.url = _v1(clean)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            auth=httpx.BasicAuth(*userinfo) if userinfo and not api_key else None,
            transport=transport,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        )
        self.models: list[str] = []
        self._healthy = False

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.name!r}, {self.url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _unavailable(self, message: str) -> BackendUnavailable:
        return BackendUnavailable(
            f"{self.name} at {self.url}: {message}", details={"backend": self.name}
        )

    def _error(self, response: httpx.Response, model: str) -> BridgeError:
        raw = response.read()
        try:
            body = json.loads(raw)
            err = body.get("error", body) if isinstance(body, dict) else body
            message = str(err.get("message", err) if isinstance(err, dict) else err)
        except ValueError:
            message = raw[:200].decode("utf-8", "replace")
        status = response.status_code
        if status in (401, 403):
            return self._unavailable(f"the server refused the API key ({message})")
        if status == 404:
            return ModelNotFound(
                f"{self.name}: {message or 'not found'}", details={"model_id": model}
            )
        if status in (400, 422):
            return ValidationError(f"{self.name}: {message}")
        return self._unavailable(f"HTTP {status}: {message}")

    def embed(self, request: EmbedRequest) -> Embeddings:
        """POST /v1/embeddings (float vectors), sorted back into input order."""
        body: dict[str, Any] = {"model": request.model, "input": list(request.inputs),
                                "encoding_format": "float"}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        try:
            response = self._client.post("/embeddings", json=body)
        except httpx.HTTPError as exc:
            raise self._unavailable(f"POST /embeddings failed ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise self._error(response, request.model)
        answer = response.json()
        rows = sorted(answer["data"], key=lambda row: row["index"])
        return Embeddings([[float(x) for x in row["embedding"]] for row in rows],
                          int((answer.get("usage") or {}).get("prompt_tokens") or 0))

    def probe(self) -> dict[str, Any]:
        """List /v1/models: healthy, latency_ms, models, runtime_info."""
        started = time.perf_counter()
        try:
            response = self._client.get("/models")
        except httpx.HTTPError as exc:
            self._healthy = False
            raise self._unavailable(f"GET /models failed ({type(exc).__name__}: {exc})") from exc
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        if response.status_code >= 400:
            self._healthy = False
            raise self._error(response, "")
        try:
            data = response.json()["data"]
            self.models = [str(m["id"]) for m in data]
        except (ValueError, KeyError, TypeError) as exc:
            self._healthy = False
            raise self._unavailable("GET /models is not an OpenAI model list") from exc
        self._healthy = True
        return {
            "healthy": True,
            "latency_ms": latency_ms,
            "models": list(self.models),
            "runtime_info": {"type": "openai"},
        }

    def ready(self) -> bool:
        """Whether the last probe succeeded (probes once if never probed)."""
        if not self._healthy:
            try:
                self.probe()
            except BridgeError:
                return False
        return self._healthy

    def _body(self, request: GenerateRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": request.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.chat or request.messages:
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            messages = messages or [{"role": "user", "content": request.prompt}]
            if request.prefill:
                messages.append({"role": "assistant", "content": request.prefill})
            return "/chat/completions", {**body, "messages": messages}
        return "/completions", {**body, "prompt": request.prompt + request.prefill}

    def generate(self, request: GenerateRequest) -> Iterator[Event]:
        """Stream Token events from the server's SSE answer, then one Done."""
        path, body = self._body(request)
        chunks, finish, usage = 0, "stop", None
        try:
            with self._client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    raise self._error(response, request.model)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise self._unavailable(f"malformed SSE chunk {data[:80]!r}") from exc
                    if isinstance(chunk.get("error"), dict):
                        raise self._unavailable(str(chunk["error"].get("message", chunk)))
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text = delta.get("content") if "delta" in choice else choice.get("text")
                        if text:
                            chunks += 1
                            yield Token(text)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except httpx.HTTPError as exc:
            raise self._unavailable(f"POST {path} failed ({type(exc).__name__}: {exc})") from exc
        usage = usage if isinstance(usage, dict) else {}
        yield Done(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or chunks),
            finish_reason="length" if finish == "length" else "stop",
            backend=self.name,
        )

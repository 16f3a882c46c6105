"""RemoteBackend: the client of a ``colab_runtime.worker`` (signed HTTP, NDJSON events).

Errors it raises:

    BackendUnavailable   cannot connect, timed out (also between two tokens), refused the
                         signature, answered something that is not a worker, stream cut short;
                         ``details["reason"]`` says which: unreachable, timeout, signature,
                         not_a_worker, cut_short
    ModelNotFound, ValidationError, ...   the worker's own error, mapped back by its code
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx

from bridge.embeddings import Embeddings, EmbedRequest
from bridge.errors import BackendUnavailable, BridgeError, error_for_code
from bridge.signing import sign
from bridge.types import Done, Event, GenerateRequest
from bridge.urls import split_userinfo
from bridge.wire import CONTENT_TYPE, WORKER_SERVICE, decode_events, request_to_dict

# ngrok's free plan caps a month at 20,000 HTTP requests and a probe costs 2 (README, "Use a
# Colab GPU": every 30 s spends the quota in ~3.5 days). Leaving half for real requests over
# 30 days, probes may spend ~333 requests a day: 2 * 86,400 / 333 ~ 520 s between probes.
NGROK_PROBE_SECONDS = 520.0
NGROK_HOSTS = (".ngrok-free.app", ".ngrok-free.dev", ".ngrok.app", ".ngrok.dev", ".ngrok.io")


def tunnel_probe_interval(url: str) -> float | None:
    """Seconds between health probes that a tunnel's quota allows (None: no limit known)."""
    host = (httpx.URL(url).host or "").lower()
    return NGROK_PROBE_SECONDS if host.endswith(NGROK_HOSTS) else None


class RemoteBackend:
    """A GPU worker reached over HTTP; every call but /health is HMAC-signed."""

    kind = "worker"

    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        *,
        transport: httpx.BaseTransport | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        health_ttl: float = 10.0,
        key_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        # user:password in the URL (a tunnel's basic auth) is sent as auth, never shown
        clean, userinfo = split_userinfo(url)
        self.url = clean.rstrip("/")
        self._secret = secret
        self._key_id = key_id
        self._health_ttl = health_ttl
        self._clock = clock
        self._checked_at: float | None = None
        self._healthy = False
        self.info: dict[str, Any] = {}
        # read timeout applies to every read, so a worker silent between tokens is cut off
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        auth = httpx.BasicAuth(*userinfo) if userinfo else None
        # ngrok's free plan puts an HTML warning page in front of a tunnel unless the request
        # carries this header (any value); harmless elsewhere (ngrok docs, "Browser warning")
        self._client = httpx.Client(
            base_url=self.url, transport=transport, timeout=timeout, auth=auth,
            headers={"ngrok-skip-browser-warning": "1"},
        )
        self.probe_interval = tunnel_probe_interval(self.url)
        self._raw_paths: dict[str, str] = {}  # signed path per route (worker under a URL prefix)

    def __repr__(self) -> str:
        return f"RemoteBackend({self.name!r}, {self.url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _signed_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        raw = self._raw_paths.get(path)
        if raw is None:  # building a request per call to learn this cost ~0.1 ms (profiled)
            raw = self._client.build_request(method, path).url.raw_path.decode("ascii")
            self._raw_paths[path] = raw
        headers = sign(self._secret, method, raw, body, key_id=self._key_id)
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    def _unavailable(self, what: str, exc: Exception) -> BackendUnavailable:
        timed_out = isinstance(exc, httpx.TimeoutException)
        return BackendUnavailable(
            f"worker {self.name!r} at {self.url}: {what} {'timed out' if timed_out else 'failed'}"
            f" ({type(exc).__name__}: {exc})",
            details={"backend": self.name, "reason": "timeout" if timed_out else "unreachable"},
        )

    def _not_a_worker(self, what: str) -> BackendUnavailable:
        return BackendUnavailable(
            f"{self.url} is not a Compute Bridge worker ({what})",
            details={"backend": self.name, "reason": "not_a_worker"},
        )

    def _error_from(self, response: httpx.Response, what: str) -> BridgeError:
        """The error a non-2xx answer stands for; a foreign or 401 answer is BackendUnavailable."""
        try:
            body = json.loads(response.read())
            error = body["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            return self._not_a_worker(
                f"{what}: HTTP {response.status_code}, "
                f"{response.headers.get('content-type', 'no type')}"
            )
        if response.status_code in (401, 403):
            return BackendUnavailable(
                f"worker {self.name!r} refused our signature: {message} (check the worker secret)",
                details={"backend": self.name, "reason": "signature"},
            )
        cls = error_for_code(code, response.status_code)
        details = error.get("details")
        return cls(message, details=details if isinstance(details, dict) else None)

    def _call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        signed: bool = True,
        read_timeout: float | None = None,
    ) -> Any:
        body = b"" if payload is None else json.dumps(payload).encode("utf-8")
        headers = self._signed_headers(method, path, body) if signed else {}
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if read_timeout is not None:
            timeout = httpx.Timeout(read_timeout, connect=self._client.timeout.connect)
        try:
            response = self._client.request(
                method, path, content=body, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise self._unavailable(f"{method} {path}", exc) from exc
        if response.status_code >= 400:
            raise self._error_from(response, f"{method} {path}")
        try:
            return response.json()
        except ValueError as exc:
            raise self._not_a_worker(f"{method} {path} answered non-JSON") from exc

    def probe(self) -> dict[str, Any]:
        """Check /health and read /info: healthy, latency_ms, models, runtime_info."""
        started = time.perf_counter()
        health = self._call("GET", "/health", signed=False)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        if not (
            isinstance(health, dict)
            and health.get("status") == "ok"
            and health.get("service") == WORKER_SERVICE
        ):
            self._healthy = False
            raise self._not_a_worker(f"/health said {health!r:.120}")
        info = self._call("GET", "/info")
        if not isinstance(info, dict):
            raise BackendUnavailable(f"worker {self.name!r}: /info is not an object")
        self.info = info
        self._healthy, self._checked_at = True, self._clock()
        models = info.get("models")
        runtime_info = info.get("runtime_info")
        return {
            "healthy": True,
            "latency_ms": latency_ms,
            "models": list(models) if isinstance(models, list) else [],
            "runtime_info": runtime_info if isinstance(runtime_info, dict) else {},
        }

    def ready(self) -> bool:
        """Whether the worker answered a probe lately (re-probes once the cache is stale)."""
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._health_ttl:
            try:
                self.probe()
            except BridgeError:
                self._healthy, self._checked_at = False, now
        return self._healthy

    def embed(self, request: EmbedRequest) -> Embeddings:
        """The worker's embeddings (POST /embed, one JSON answer)."""
        return Embeddings.from_dict(self._call("POST", "/embed", request.as_dict()))

    def load_model(
        self, model_id: str, quantization: str | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Ask the worker to load a model (``timeout``: for this call, else the read timeout)."""
        payload = {"model_id": model_id, "quantization": quantization}
        result = self._call("POST", "/models/load", payload, read_timeout=timeout)
        return result if isinstance(result, dict) else {"status": "loaded", "model_id": model_id}

    def shutdown(self) -> None:
        """Ask the worker process to stop itself (a worker this service launched)."""
        self._call("POST", "/shutdown")

    def generate(self, request: GenerateRequest) -> Iterator[Event]:
        """Stream the worker's events; ``Done.backend`` names this worker."""
        body = json.dumps(request_to_dict(request)).encode("utf-8")
        headers = self._signed_headers("POST", "/generate", body)
        headers["Accept"] = CONTENT_TYPE
        finished = False
        try:
            with self._client.stream("POST", "/generate", content=body, headers=headers) as resp:
                if resp.status_code >= 400:
                    raise self._error_from(resp, "POST /generate")
                if not resp.headers.get("content-type", "").startswith(CONTENT_TYPE):
                    raise self._not_a_worker(
                        f"/generate answered {resp.headers.get('content-type', 'no content type')}"
                    )
                for event in decode_events(resp.iter_lines()):
                    if isinstance(event, Done):
                        finished = True
                        event = replace(event, backend=self.name)
                    yield event
        except httpx.HTTPError as exc:
            raise self._unavailable("POST /generate", exc) from exc
        if not finished:
            raise BackendUnavailable(
                f"worker {self.name!r} ended its stream before finishing the answer",
                details={"backend": self.name, "reason": "cut_short"},
            )

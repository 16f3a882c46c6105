"""The ways to attach remote compute (POST /system/colab/connect), each ending in Remote.attach.

worker_url: a running worker, probed with its secret.  openai: an OpenAI-compatible server.
runtime_url: papermill runs the worker notebook on that Jupyter server, then attach.
credentials: Google sign-in (or its consent URL), a Colab runtime from the control plane, the
notebook on it through the runtime proxy, then attach with keep-alive; ``manual`` uploads the
notebook to Drive instead and answers its "open in Colab" link.
The body is parsed once into a typed request (connect_request.py).
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from flask import current_app

from bridge.backends.remote import RemoteBackend
from bridge.errors import BackendUnavailable, BridgeError, ValidationError
from bridge.urls import UNREACHABLE_HINT, connect_failure, redact_url, split_userinfo
from colab_runtime.launch import RemoteRuntime
from local_api.accounts.identity import Identity
from local_api.remote import colab_connect, connect_request
from local_api.remote.connect_request import (
    ColabConnect,
    ConnectRequest,
    RuntimeConnect,
    Target,
    WorkerConnect,
)
from local_api.remote.launching import launch
from local_api.remote.lifecycle import Attached, build_backend
from local_api.remote.workers import remote

MODES = connect_request.MODES


def connect(body: dict[str, Any], who: Identity) -> dict[str, Any]:
    """Run one connect; the answer of POST /system/colab/connect (the body is not changed)."""
    request = connect_request.parse(body)
    name = request.common.name or _default_name(request)
    remote().check_name(name)
    if isinstance(request, ColabConnect):
        return colab_connect.connect(request, who, name, _attach)
    if isinstance(request, RuntimeConnect):
        secret = secrets.token_urlsafe(32)
        url, _ = launch(_runtime_of(request), request.launch, secret, field="token")
        return _attach(request, Target(name, "worker", url, secret, launched=True), who)
    if isinstance(request, WorkerConnect):
        return _attach(request, Target(name, "worker", request.worker_url,
                                       request.worker_secret), who)
    return _attach(request, Target(name, "openai", request.base_url, request.api_key), who)


def _runtime_of(request: RuntimeConnect) -> RemoteRuntime:
    """The Jupyter runtime; user:password in its URL becomes a Basic header (never logged)."""
    url, userinfo = split_userinfo(request.runtime_url)
    headers = dict(request.headers)
    if userinfo:
        if request.token:
            raise ValidationError("give the runtime's token or user:password in runtime_url, "
                                  "not both", details={"field": "runtime_url"})
        pair = base64.b64encode(":".join(userinfo).encode()).decode()
        headers.setdefault("Authorization", f"Basic {pair}")
    return RemoteRuntime(url, request.token, headers)


def _default_name(request: ConnectRequest) -> str:
    taken = set(remote().names(stored=True))
    stem = (f"colab-{request.accelerator.lower()}" if isinstance(request, ColabConnect) else
            {"runtime_url": "jupyter", "worker_url": "worker", "openai_base_url": "openai"}[
                request.mode])
    return next(f"{stem}-{n}" for n in range(1, 10_000) if f"{stem}-{n}" not in taken)


def _attach(request: ConnectRequest, target: Target, who: Identity) -> dict[str, Any]:
    """Probe the backend, then attach and describe it; on any failure nothing is stored and a
    worker this connect launched is stopped again."""
    read_timeout = request.common.read_timeout
    name, url = target.name, target.url
    backend = build_backend(name, target.kind, url, target.secret, read_timeout)
    try:
        try:
            probe = backend.probe()
            if isinstance(request, WorkerConnect) and request.model_id:
                backend.load_model(request.model_id, request.quantization,
                                   timeout=request.common.timeout)
                probe = backend.probe()
        except BackendUnavailable as exc:
            raise _probe_error(exc, request.mode, url) from exc
        info = probe.get("runtime_info") or {}
        runtime: dict[str, Any] = {"mode": request.mode, "launched": target.launched,
                                   "timeout": read_timeout, "runtime_type": info.get("type")}
        if target.colab is not None:
            runtime["colab"] = target.colab
        attached = Attached(name, target.kind, url, backend, runtime, client=target.client,
                            keepalive=target.keepalive)
        status = remote().attach(attached, target.secret, who.user_id)
    except BaseException:
        backend.close()
        if target.launched:  # it holds a loaded model (maybe on 0.0.0.0): stop it, signed
            _stop_worker(name, url, target.secret)
        raise
    answer: dict[str, Any] = {
        "status": "connected", "worker": name, "kind": target.kind, "url": redact_url(url),
        "runtime_info": summary(info), "models": probe.get("models", []),
        "latency_ms": status.get("latency_ms"), "healthy": status.get("healthy"),
    }  # fmt: skip
    if target.colab is not None:
        answer["runtime"] = {k: target.colab[k]
                             for k in ("endpoint", "accelerator", "variant", "fit")}
    return answer


def _stop_worker(name: str, url: str, secret: str) -> None:
    """Stop a worker this connect launched (a fresh client: the router may have closed its own)."""
    stopper = RemoteBackend(name, url, secret, read_timeout=10.0)
    try:
        stopper.shutdown()
    except Exception as exc:  # already dead or unreachable: nothing more to do from here
        current_app.logger.warning("could not stop the worker at %s: %s", redact_url(url), exc)
    finally:
        stopper.close()


def summary(info: dict[str, Any]) -> dict[str, Any]:
    """AQ's runtime_info: type, GPU name, memory (bytes: GPU memory, else host memory)."""
    memory = info.get("memory")
    total_mb = None
    if isinstance(memory, dict):
        total_mb = memory.get("gpu_total_mb") or memory.get("host_total_mb")
    elif isinstance(memory, int | float):
        total_mb = memory / 2**20
    return {"type": info.get("type"), "gpu": info.get("gpu"), "device": info.get("device"),
            "memory": int(total_mb * 2**20) if total_mb else None}


def _probe_error(exc: BackendUnavailable, mode: str, url: str) -> BridgeError:
    reason = exc.details.get("reason")
    if mode == "worker_url" and reason == "signature":
        return ValidationError("the worker refused the worker_secret (it was started with "
                               "another one)", details={"field": "worker_secret"})
    if reason == "not_a_worker":
        field = "worker_url" if mode in ("worker_url", "openai_base_url") else "runtime_url"
        return ValidationError(exc.message, details={"field": field})
    cause = _transport_cause(exc)
    if cause is not None and mode in ("worker_url", "openai_base_url"):
        what = "worker" if mode == "worker_url" else "OpenAI-compatible server"
        return BackendUnavailable(
            f"cannot reach the {what} at {redact_url(url)} ({connect_failure(cause)}): "
            f"{UNREACHABLE_HINT}", details={**exc.details, "reason": "unreachable"})
    if mode in ("runtime_url", "credentials"):
        return BackendUnavailable(
            f"the worker started but {redact_url(url)} cannot be reached from this machine "
            f"({exc.message}); tunnel none needs a runtime this machine can reach, else use ngrok",
            details={"reason": reason},
        )
    return exc


def _transport_cause(exc: BaseException) -> BaseException | None:
    """The connection failure (httpx, OSError) behind ``exc``, if that is what it was."""
    import httpx

    seen: BaseException | None = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, httpx.TransportError | OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None

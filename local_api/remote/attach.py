"""The ways to attach remote compute (POST /system/colab/connect), each ending in Remote.attach.

worker_url: a running worker, probed with its secret.  openai: an OpenAI-compatible server.
runtime_url: papermill runs the worker notebook on that Jupyter server, then attach.
credentials: Google sign-in (or its consent URL), a Colab runtime from the control plane, the
notebook on it through the runtime proxy, then attach with keep-alive; ``manual`` uploads the
notebook to Drive instead and answers its "open in Colab" link.
``timeout`` bounds the connect (each notebook step of a launch; a worker's model load);
``read_timeout`` is how long an attached worker may stay silent.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from flask import current_app

from bridge.backends.remote import RemoteBackend
from bridge.errors import BackendUnavailable, BridgeError, ValidationError
from bridge.urls import redact_url, split_userinfo
from colab_runtime.keepalive import KeepAlive
from colab_runtime.launch import RemoteRuntime
from colab_runtime.notebook import check_package_spec
from local_api.accounts.identity import Identity
from local_api.remote import colab_connect
from local_api.remote.launching import CONNECT_TIMEOUT, check_tunnel, launch
from local_api.remote.workers import Attached, build_backend, remote

MODES = ("credentials", "runtime_url", "worker_url", "openai_base_url")
READ_TIMEOUT = 60.0  # default of read_timeout (seconds)
_LAUNCH = {"tunnel", "ngrok_token", "model_id", "quantization", "port", "package_spec"}


def mode_of(body: dict[str, Any]) -> str:
    """Which of the connect ways the body asks for (exactly one)."""
    if "base_url" in body:
        body.setdefault("openai_base_url", body.pop("base_url"))
    given = [m for m in MODES if m in body]
    if len(given) != 1:
        raise ValidationError(
            "give exactly one of credentials (Colab), runtime_url (a Jupyter runtime), "
            "worker_url (a running worker) or openai_base_url (an OpenAI-compatible server)",
            details={"given": given},
        )
    mode = given[0]
    allowed = {
        "credentials": {"accelerator", "manual", "redirect_uri", *_LAUNCH},
        "runtime_url": {"token", "headers", *_LAUNCH},
        "worker_url": {"worker_secret", "model_id", "quantization"},
        "openai_base_url": {"api_key"},
    }[mode] | {mode, "name", "timeout", "read_timeout"}
    extra = sorted(set(body) - allowed)
    if extra:
        raise ValidationError(f"{', '.join(extra)} cannot be used with {mode}",
                              details={"field": extra[0]})
    if mode == "worker_url" and not body.get("worker_secret"):
        raise ValidationError("worker_url needs the worker_secret the worker was started with",
                              details={"field": "worker_secret"})
    if "package_spec" in body:
        check_package_spec(body["package_spec"])
    if mode == "runtime_url":
        check_tunnel(body, colab=False)
    return mode


def connect(body: dict[str, Any], who: Identity) -> dict[str, Any]:
    """Run one connect; the answer of POST /system/colab/connect."""
    mode = mode_of(body)
    name = body.get("name") or _default_name(mode, body)
    remote().check_name(name)
    if mode == "credentials":
        return colab_connect.connect(body, who, name, _attach)
    if mode == "runtime_url":
        runtime = _runtime_of(body)
        secret = secrets.token_urlsafe(32)
        url, _ = launch(runtime, body, secret, field="token")
        return _attach(name, "worker", url, secret, body, who, mode, launched=True)
    if mode == "worker_url":
        return _attach(name, "worker", body["worker_url"], body["worker_secret"], body, who, mode)
    return _attach(name, "openai", body["openai_base_url"], body.get("api_key") or "", body, who,
                   mode)


def _runtime_of(body: dict[str, Any]) -> RemoteRuntime:
    """The Jupyter runtime; user:password in its URL becomes a Basic header (never logged)."""
    url, userinfo = split_userinfo(body["runtime_url"])
    headers = dict(body.get("headers") or {})
    if userinfo:
        if body.get("token"):
            raise ValidationError("give the runtime's token or user:password in runtime_url, "
                                  "not both", details={"field": "runtime_url"})
        pair = base64.b64encode(":".join(userinfo).encode()).decode()
        headers.setdefault("Authorization", f"Basic {pair}")
    return RemoteRuntime(url, body.get("token"), headers)


def _default_name(mode: str, body: dict[str, Any]) -> str:
    taken = set(remote().names(stored=True))
    stem = {"credentials": f"colab-{str(body.get('accelerator') or 'T4').lower()}",
            "runtime_url": "jupyter", "worker_url": "worker", "openai_base_url": "openai"}[mode]
    return next(f"{stem}-{n}" for n in range(1, 10_000) if f"{stem}-{n}" not in taken)


def _attach(
    name: str, kind: str, url: str, secret: str, body: dict[str, Any], who: Identity, mode: str,
    *, launched: bool = False, colab: dict[str, Any] | None = None, client: Any = None,
    keepalive: KeepAlive | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Probe the backend, then attach and describe it; on any failure nothing is stored and a
    worker this connect launched is stopped again."""
    read_timeout = float(body.get("read_timeout") or READ_TIMEOUT)
    backend = build_backend(name, kind, url, secret, read_timeout)
    try:
        try:
            probe = backend.probe()
            if mode == "worker_url" and body.get("model_id"):
                backend.load_model(body["model_id"], body.get("quantization") or "none",
                                   timeout=float(body.get("timeout") or CONNECT_TIMEOUT))
                probe = backend.probe()
        except BackendUnavailable as exc:
            raise _probe_error(exc, mode, url) from exc
        info = probe.get("runtime_info") or {}
        runtime: dict[str, Any] = {"mode": mode, "launched": launched, "timeout": read_timeout,
                                   "runtime_type": info.get("type")}
        if colab is not None:
            runtime["colab"] = colab
        attached = Attached(name, kind, url, backend, runtime, client=client,
                            keepalive=keepalive)
        status = remote().attach(attached, secret, who.user_id)
    except BaseException:
        backend.close()
        if launched:  # it holds a loaded model (maybe on 0.0.0.0): stop it, signed
            _stop_worker(name, url, secret)
        raise
    answer: dict[str, Any] = {
        "status": "connected", "worker": name, "kind": kind, "url": redact_url(url),
        "runtime_info": summary(info), "models": probe.get("models", []),
        "latency_ms": status.get("latency_ms"), "healthy": status.get("healthy"),
    }  # fmt: skip
    if colab is not None:
        answer["runtime"] = {k: colab[k] for k in ("endpoint", "accelerator", "variant", "fit")}
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
    if mode in ("runtime_url", "credentials"):
        return BackendUnavailable(
            f"the worker started but {redact_url(url)} cannot be reached from this machine "
            f"({exc.message}); tunnel none needs a runtime this machine can reach, else use ngrok",
            details={"reason": reason},
        )
    return exc



"""The ways to attach remote compute (POST /system/colab/connect), each ending in Remote.attach.

worker_url: a running worker, probed with its secret.  openai: an OpenAI-compatible server.
runtime_url: papermill runs the worker notebook on that Jupyter server, then attach.
credentials: Google sign-in (or its consent URL), a Colab runtime from the control plane, the
notebook on it through the runtime proxy, then attach with keep-alive; ``manual`` uploads the
notebook to Drive instead and answers its "open in Colab" link.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import tempfile
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import current_app, request

from bridge.errors import BackendUnavailable, BridgeError, Unauthorized, ValidationError
from colab_runtime import drive
from colab_runtime.colab import VARIANTS, Assignment
from colab_runtime.launch import RemoteRuntime, launch_worker
from colab_runtime.notebook import worker_notebook_path
from local_api import google_account
from local_api.identity import Identity
from local_api.remote import Attached, build_backend, public_url, remote

MODES = ("credentials", "runtime_url", "worker_url", "openai_base_url")


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
        "credentials": {"accelerator", "manual", "tunnel", "ngrok_token", "model_id",
                        "quantization", "port", "redirect_uri"},
        "runtime_url": {"token", "headers", "tunnel", "ngrok_token", "model_id", "quantization",
                        "port"},
        "worker_url": {"worker_secret", "model_id", "quantization"},
        "openai_base_url": {"api_key"},
    }[mode] | {mode, "name", "timeout"}
    extra = sorted(set(body) - allowed)
    if extra:
        raise ValidationError(f"{', '.join(extra)} cannot be used with {mode}",
                              details={"field": extra[0]})
    if mode == "worker_url" and not body.get("worker_secret"):
        raise ValidationError("worker_url needs the worker_secret the worker was started with",
                              details={"field": "worker_secret"})
    if mode == "credentials" and not body.get("manual") and not body.get("tunnel") \
            and not body.get("ngrok_token"):
        raise ValidationError("a Colab runtime is reached only through a tunnel: give ngrok_token "
                              "(or tunnel none if this machine reaches the runtime directly)",
                              details={"field": "ngrok_token"})
    tunnel = body.get("tunnel") or ("ngrok" if body.get("ngrok_token") else "none")
    if tunnel == "ngrok" and not body.get("ngrok_token"):
        raise ValidationError("tunnel ngrok needs an ngrok_token (dashboard.ngrok.com)",
                              details={"field": "ngrok_token"})
    body["tunnel"] = tunnel if mode in ("credentials", "runtime_url") else None
    return mode


def connect(body: dict[str, Any], who: Identity) -> dict[str, Any]:
    """Run one connect; the answer of POST /system/colab/connect."""
    mode = mode_of(body)
    name = body.get("name") or _default_name(mode, body)
    remote().check_name(name)
    if mode == "credentials":
        return _colab(body, who, name)
    if mode == "runtime_url":
        runtime = RemoteRuntime(body["runtime_url"], body.get("token"), body.get("headers") or {})
        secret = secrets.token_urlsafe(32)
        url, _ = _launch(runtime, body, secret, field="token")
        return _attach(name, "worker", url, secret, body, who, mode, launched=True)
    if mode == "worker_url":
        return _attach(name, "worker", body["worker_url"], body["worker_secret"], body, who, mode)
    return _attach(name, "openai", body["openai_base_url"], body.get("api_key") or "", body, who,
                   mode)


def _default_name(mode: str, body: dict[str, Any]) -> str:
    taken = set(remote().names())
    stem = {"credentials": f"colab-{str(body.get('accelerator') or 'T4').lower()}",
            "runtime_url": "jupyter", "worker_url": "worker", "openai_base_url": "openai"}[mode]
    return next(f"{stem}-{n}" for n in range(1, 10_000) if f"{stem}-{n}" not in taken)


def _attach(
    name: str, kind: str, url: str, secret: str, body: dict[str, Any], who: Identity, mode: str,
    *, launched: bool = False, colab: dict[str, Any] | None = None, client: Any = None,
    assignment: Assignment | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Probe the backend (nothing is stored when it fails), then attach and describe it."""
    timeout = float(body.get("timeout") or 60)
    backend = build_backend(name, kind, url, secret, timeout)
    try:
        probe = backend.probe()
        if mode == "worker_url" and body.get("model_id"):
            backend.load_model(body["model_id"], body.get("quantization") or "none")
            probe = backend.probe()
    except BackendUnavailable as exc:
        backend.close()
        raise _probe_error(exc, mode, url) from exc
    except BaseException:
        backend.close()
        raise
    info = probe.get("runtime_info") or {}
    runtime: dict[str, Any] = {"mode": mode, "launched": launched, "timeout": timeout,
                               "runtime_type": info.get("type")}
    if colab is not None:
        runtime["colab"] = colab
    attached = Attached(name, kind, url, backend, runtime, client=client)
    status = remote().attach(attached, secret, who.user_id, assignment)
    answer: dict[str, Any] = {
        "status": "connected", "worker": name, "kind": kind, "url": public_url(url),
        "runtime_info": summary(info), "models": probe.get("models", []),
        "latency_ms": status.get("latency_ms"), "healthy": status.get("healthy"),
    }  # fmt: skip
    if colab is not None:
        answer["runtime"] = {k: colab[k] for k in ("endpoint", "accelerator", "variant")}
    return answer


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
            f"the worker started but {public_url(url)} cannot be reached from this machine "
            f"({exc.message}); tunnel none needs a runtime this machine can reach, else use ngrok",
            details={"reason": reason},
        )
    return exc


def _reachable(url: str, runtime_url: str, tunnel: str) -> str:
    """With tunnel none, a worker on a remote runtime is reached at the runtime's host."""
    runtime_host = urlsplit(runtime_url).hostname or ""
    parts = urlsplit(url)
    if tunnel != "none" or _is_loopback(runtime_host) or not _is_loopback(parts.hostname or ""):
        return url
    return urlunsplit(parts._replace(netloc=f"{runtime_host}:{parts.port}"))


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _launch(
    runtime: RemoteRuntime, body: dict[str, Any], secret: str, *, field: str | None
) -> tuple[str, dict[str, Any]]:
    """papermill runs the worker notebook on ``runtime``; the executed copy is deleted after."""
    remote_host = not _is_loopback(urlsplit(runtime.url).hostname or "")
    params = {
        "model_id": body.get("model_id") or current_app.config["SETTINGS"].default_model,
        "quantization": body.get("quantization") or "none", "worker_secret": secret,
        "tunnel": body["tunnel"], "ngrok_token": body.get("ngrok_token") or "",
        "port": int(body.get("port") or 0),
        "host": "0.0.0.0" if body["tunnel"] == "none" and remote_host else "127.0.0.1",
    }  # fmt: skip
    folder = tempfile.mkdtemp(prefix="bridge-connect-")  # the executed copy holds the secret
    try:
        result = launch_worker(worker_notebook_path(), params, runtime=runtime,
                               output_path=f"{folder}/colab_worker.out.ipynb")
    except Unauthorized as exc:  # the runtime's refusal, not the caller's: never a 401 here
        if field is None:
            raise BackendUnavailable(f"the Colab runtime proxy refused us: {exc.message}") from exc
        raise ValidationError(exc.message, details={"field": field}) from exc
    except BackendUnavailable as exc:
        exc.details.pop("output_notebook_path", None)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _reachable(result.worker_url, runtime.url, body["tunnel"]), result.runtime_info


def _colab(body: dict[str, Any], who: Identity, name: str) -> dict[str, Any]:
    creds = body["credentials"]
    credentials = google_account.stored_credentials(who.user_id, creds["client_id"])
    if credentials is None:
        return _authorization_required(body, who)
    if body.get("manual"):
        return _manual(credentials, who, body)
    accelerator = str(body.get("accelerator") or "T4")
    variant = next((v for v, accs in VARIANTS.items() if accelerator in accs), "GPU")
    client = google_account.colab_client(credentials)
    try:
        assignment = client.assign(accelerator, variant)
    except Unauthorized:
        google_account.forget(who.user_id)
        return _authorization_required(body, who)
    colab = {"endpoint": assignment.endpoint, "accelerator": assignment.accelerator,
             "variant": assignment.variant, "notebook_hash": client.notebook_hash,
             "proxy_url": assignment.proxy_url}
    secret = secrets.token_urlsafe(32)
    try:
        runtime = RemoteRuntime.colab(assignment.proxy_url, assignment.proxy_token)
        url, _ = _launch(runtime, body, secret, field=None)
        return _attach(name, "worker", url, secret, body, who, "credentials", launched=True,
                       colab=colab, client=client, assignment=assignment)
    except BaseException:
        try:  # a runtime nobody uses must not stay assigned (and billed)
            client.release(assignment.endpoint)
        except BridgeError as exc:
            current_app.logger.warning("could not release %s: %s", assignment.endpoint, exc)
        raise


def _authorization_required(body: dict[str, Any], who: Identity) -> dict[str, Any]:
    creds = body["credentials"]
    redirect = body.get("redirect_uri") or request.url_root + "api/v1/system/colab/callback"
    url = google_account.begin_sign_in(who.user_id, creds["client_id"], creds["client_secret"],
                                       redirect)
    return {"status": "authorization_required", "auth_url": url, "redirect_uri": redirect,
            "message": "Open auth_url in a browser and allow access; then send this connect "
                       "request again."}


def _manual(credentials: Any, who: Identity, body: dict[str, Any]) -> dict[str, Any]:
    where = google_account.endpoints()
    upload = drive.upload_notebook(credentials, worker_notebook_path(),
                                   root_url=where.drive_root_url)
    return {"status": "notebook_uploaded", "colab_url": upload.colab_url,
            "file_id": upload.file_id,
            "message": "Open colab_url, pick a GPU runtime, fill in worker_secret and ngrok_token, "
                       "Run all, then connect with the printed worker_url and your worker_secret."}

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
import shutil
import tempfile
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import current_app, request

from bridge.backends.remote import RemoteBackend
from bridge.errors import BackendUnavailable, BridgeError, Unauthorized, ValidationError
from bridge.urls import is_loopback, redact_url, split_userinfo
from colab_runtime import drive
from colab_runtime.colab import VARIANTS, Assignment
from colab_runtime.launch import RemoteRuntime, launch_worker
from colab_runtime.notebook import check_package_spec, default_package_spec, worker_notebook_path
from local_api.accounts.identity import Identity
from local_api.remote import google_account
from local_api.remote.workers import Attached, build_backend, remote

MODES = ("credentials", "runtime_url", "worker_url", "openai_base_url")
CONNECT_TIMEOUT, READ_TIMEOUT = 600.0, 60.0  # defaults of timeout and read_timeout (seconds)
LAUNCH_GRACE = 30.0  # past the worker's start timeout, a notebook step is taken as hung
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
        _check_tunnel(body, colab=False)
    return mode


def _tunnel(body: dict[str, Any]) -> str:
    """The launch's tunnel: as given, else ngrok when there is a token, else none."""
    return str(body.get("tunnel") or ("ngrok" if body.get("ngrok_token") else "none"))


def _check_tunnel(body: dict[str, Any], *, colab: bool) -> None:
    """A launch's tunnel needs its token; Colab needs a tunnel unless told ``tunnel: none``."""
    if colab and not body.get("ngrok_token") and not body.get("tunnel"):
        raise ValidationError("a Colab runtime is reached only through a tunnel: give ngrok_token "
                              "(or tunnel none if this machine reaches the runtime directly)",
                              details={"field": "ngrok_token"})
    if _tunnel(body) == "ngrok" and not body.get("ngrok_token"):
        raise ValidationError("tunnel ngrok needs an ngrok_token (dashboard.ngrok.com)",
                              details={"field": "ngrok_token"})


def connect(body: dict[str, Any], who: Identity) -> dict[str, Any]:
    """Run one connect; the answer of POST /system/colab/connect."""
    mode = mode_of(body)
    name = body.get("name") or _default_name(mode, body)
    remote().check_name(name)
    if mode == "credentials":
        return _colab(body, who, name)
    if mode == "runtime_url":
        runtime = _runtime_of(body)
        secret = secrets.token_urlsafe(32)
        url, _ = _launch(runtime, body, secret, field="token")
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
    assignment: Assignment | None = None,
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
        attached = Attached(name, kind, url, backend, runtime, client=client)
        status = remote().attach(attached, secret, who.user_id, assignment)
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
        answer["runtime"] = {k: colab[k] for k in ("endpoint", "accelerator", "variant")}
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


def _reachable(url: str, runtime_url: str, tunnel: str) -> str:
    """With tunnel none, a worker on a remote runtime is reached at the runtime's host."""
    runtime_host = urlsplit(runtime_url).hostname or ""
    parts = urlsplit(url)
    if tunnel != "none" or is_loopback(runtime_host) or not is_loopback(parts.hostname or ""):
        return url
    return urlunsplit(parts._replace(netloc=f"{runtime_host}:{parts.port}"))


def launch_parameters(body: dict[str, Any], secret: str, runtime_url: str) -> dict[str, Any]:
    """The worker notebook's parameters for a connect body (this project pinned by default)."""
    tunnel = _tunnel(body)
    remote_host = not is_loopback(urlsplit(runtime_url).hostname or "")
    return {
        "model_id": body.get("model_id") or current_app.config["SETTINGS"].default_model,
        "quantization": body.get("quantization") or "none", "worker_secret": secret,
        "tunnel": tunnel, "ngrok_token": body.get("ngrok_token") or "",
        "port": int(body.get("port") or 0),
        "host": "0.0.0.0" if tunnel == "none" and remote_host else "127.0.0.1",
        "package_spec": body.get("package_spec") or default_package_spec(),
        "start_timeout": float(body.get("timeout") or CONNECT_TIMEOUT),
    }  # fmt: skip


def _launch(
    runtime: RemoteRuntime, body: dict[str, Any], secret: str, *, field: str | None
) -> tuple[str, dict[str, Any]]:
    """papermill runs the worker notebook on ``runtime``; the executed copy is deleted after."""
    params = launch_parameters(body, secret, runtime.url)
    folder = tempfile.mkdtemp(prefix="bridge-connect-")  # the executed copy holds the secret
    try:
        # the notebook reports a slow start itself; a step that hangs is stopped after this
        result = launch_worker(worker_notebook_path(folder), params, runtime=runtime,
                               output_path=f"{folder}/colab_worker.out.ipynb",
                               execution_timeout=params["start_timeout"] + LAUNCH_GRACE)
    except Unauthorized as exc:  # the runtime's refusal, not the caller's: never a 401 here
        if field is None:
            raise BackendUnavailable(f"the Colab runtime proxy refused us: {exc.message}") from exc
        raise ValidationError(exc.message, details={"field": field}) from exc
    except BackendUnavailable as exc:
        exc.details.pop("output_notebook_path", None)
        if exc.details.get("ename") == "CalledProcessError" and "pip" in exc.message:
            exc.message += ("; the runtime could not install this project: set package_spec to "
                            "a wheel or Git URL it can install")
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _reachable(result.worker_url, runtime.url, params["tunnel"]), result.runtime_info


def _colab(body: dict[str, Any], who: Identity, name: str) -> dict[str, Any]:
    creds = body["credentials"]
    credentials = google_account.stored_credentials(who.user_id, creds["client_id"])
    if credentials is None:
        return _authorization_required(body, who)
    if body.get("manual"):
        return _manual(credentials, who, body)
    _check_tunnel(body, colab=True)  # after the consent step: the sign-in comes first
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
    with tempfile.TemporaryDirectory(prefix="bridge-upload-") as folder:
        upload = drive.upload_notebook(credentials, worker_notebook_path(folder),
                                       root_url=where.drive_root_url)
    return {"status": "notebook_uploaded", "colab_url": upload.colab_url,
            "file_id": upload.file_id,
            "message": "Open colab_url, pick a GPU runtime, fill in worker_secret, ngrok_token and "
                       "package_spec (a wheel or Git URL of this project), Run all, then connect "
                       "with the printed worker_url and your worker_secret."}

"""Launch the worker notebook on a Jupyter runtime (a Colab one, or any) for a connect."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import current_app

from bridge.errors import BackendUnavailable, Unauthorized, ValidationError
from bridge.urls import is_loopback
from colab_runtime import wheel
from colab_runtime.launch import RemoteRuntime, launch_worker
from colab_runtime.notebook import worker_notebook_path
from local_api.remote.connect_request import Launch

LAUNCH_GRACE = 30.0  # past the worker's start timeout, a notebook step is taken as hung


def reachable(url: str, runtime_url: str, tunnel: str) -> str:
    """With tunnel none, a worker on a remote runtime is reached at the runtime's host."""
    runtime_host = urlsplit(runtime_url).hostname or ""
    parts = urlsplit(url)
    if tunnel != "none" or is_loopback(runtime_host) or not is_loopback(parts.hostname or ""):
        return url
    return urlunsplit(parts._replace(netloc=f"{runtime_host}:{parts.port}"))


def launch_parameters(launch: Launch, secret: str, runtime_url: str) -> dict[str, Any]:
    """The worker notebook's parameters for a launch; without a package_spec the launch
    uploads this service's own wheel (``launch`` fills package_spec and package_build)."""
    remote_host = not is_loopback(urlsplit(runtime_url).hostname or "")
    return {
        "model_id": launch.model_id or current_app.config["SETTINGS"].default_model,
        "quantization": launch.quantization, "worker_secret": secret,
        "tunnel": launch.tunnel, "ngrok_token": launch.ngrok_token, "port": launch.port,
        "host": "0.0.0.0" if launch.tunnel == "none" and remote_host else "127.0.0.1",
        "package_spec": launch.package_spec, "package_build": "",
        "start_timeout": launch.timeout,
    }  # fmt: skip


def launch(
    runtime: RemoteRuntime, request: Launch, secret: str, *, field: str | None
) -> tuple[str, dict[str, Any]]:
    """papermill runs the worker notebook on ``runtime``; the executed copy is deleted after."""
    params = launch_parameters(request, secret, runtime.url)
    folder = tempfile.mkdtemp(prefix="bridge-connect-")  # the executed copy holds the secret
    try:
        if not params["package_spec"]:  # never a name from a public index: our own wheel
            own = wheel.own_wheel(current_app.config["SETTINGS"].home)
            params["package_spec"] = wheel.upload(runtime.url, runtime.headers, own,
                                                  token=runtime.token)
            params["package_build"] = f"{wheel.version()}+{wheel.build_id(own)}"
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
    return reachable(result.worker_url, runtime.url, params["tunnel"]), result.runtime_info



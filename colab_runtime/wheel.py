"""This service's own wheel, built once per version and handed to a runtime through Jupyter.

A runtime must run exactly the service's version, and never a bare package name from a public
index (this project is not published there; a squatted name would run with the worker secret
and the ngrok token). So the launcher builds the wheel from this source tree (cached under
``BRIDGE_HOME/wheels``), uploads it with the runtime's contents API (``PUT /api/contents/<name>``,
base64: the Jupyter REST API every runtime, Colab's included, serves), and the notebook installs
that file.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from bridge.errors import BackendUnavailable, Unauthorized, ValidationError
from bridge.urls import UNREACHABLE_HINT, connect_failure, redact_url
from colab_runtime.launch import BOOTING, KERNEL_START_TRIES
from colab_runtime.notebook import PACKAGE, default_package_spec
from colab_runtime.proxy import PROXY_TOKEN_HEADER, is_refusal, refusal

SOURCE = Path(__file__).resolve().parent.parent
_BUILD_LOCK = threading.Lock()


def version() -> str:
    """The running version (what default_package_spec pins)."""
    return default_package_spec().split("==", 1)[1]


def own_wheel(home: Path) -> Path:
    """The wheel of this version, built from this source tree the first time it is needed."""
    folder = home / "wheels" / version()
    name = f"{PACKAGE.replace('-', '_')}-{version()}-py3-none-any.whl"
    with _BUILD_LOCK:
        if (folder / name).is_file():
            return folder / name
        if not (SOURCE / "pyproject.toml").is_file():
            raise ValidationError(
                "this installation has no source tree to build its wheel from: give "
                "package_spec (a wheel or Git URL of this version)",
                details={"field": "package_spec"})
        folder.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder)]
        # offline with the setuptools at hand first; else pip fetches the build backend
        for isolation in (["--no-build-isolation"], []):
            done = subprocess.run([*pip, *isolation, str(SOURCE)], capture_output=True,
                                  text=True, timeout=300, check=False)
            if done.returncode == 0 and (folder / name).is_file():
                break
        if done.returncode != 0 or not (folder / name).is_file():
            raise BackendUnavailable(f"could not build this service's wheel: "
                                     f"{(done.stderr or done.stdout)[-300:]}")
        return folder / name


def build_id(wheel: Path) -> str:
    """A short digest of the wheel: a runtime that installed this exact build skips the install."""
    return hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]


def upload(runtime_url: str, headers: Mapping[str, str], wheel: Path, *,
           token: str | None = None, timeout: float = 120.0, backoff: float = 2.0) -> str:
    """Put the wheel at the runtime's contents root; returns the path the kernel installs.

    Raises Unauthorized (401/403), BackendUnavailable (unreachable, other refusals), and,
    behind Colab's runtime proxy (``headers`` carry its token), ProxyTokenRefused on a 401 or
    an empty 404: an expired or stale token, to be renewed from the assignment list.
    """
    auth = dict(headers)
    if token:
        auth.setdefault("Authorization", f"token {token}")
    body = {"type": "file", "format": "base64", "name": wheel.name,
            "content": base64.b64encode(wheel.read_bytes()).decode()}
    url = f"{runtime_url.rstrip('/')}/api/contents/{wheel.name}"
    for attempt in range(1, KERNEL_START_TRIES + 1):  # a fresh VM answers 502 for a while
        try:
            answer = requests.put(url, json=body, headers=auth, timeout=timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise BackendUnavailable(
                f"cannot reach the runtime at {redact_url(runtime_url)} "
                f"({connect_failure(exc)}): {UNREACHABLE_HINT}",
                details={"reason": "unreachable"}) from exc
        except requests.RequestException as exc:
            raise BackendUnavailable(
                f"cannot upload the wheel to the runtime ({type(exc).__name__})") from exc
        if answer.status_code not in BOOTING or attempt == KERNEL_START_TRIES:
            break
        time.sleep(backoff * 2 ** (attempt - 1))
    if PROXY_TOKEN_HEADER in auth and is_refusal(answer.status_code, answer.content):
        raise refusal(answer.status_code, "the wheel upload")
    if answer.status_code in (401, 403):
        raise Unauthorized(f"the Jupyter runtime refused the token ({answer.status_code})")
    if answer.status_code not in (200, 201):
        raise BackendUnavailable(
            f"the runtime refused the wheel upload (HTTP {answer.status_code})",
            details={"upstream_status": answer.status_code})
    return f"./{wheel.name}"

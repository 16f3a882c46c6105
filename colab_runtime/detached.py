"""Start the worker as a detached process (its own session): it outlives the kernel that started it.

The secret and the ngrok token travel in the child's environment, never on its command line.
The child writes ``{url, public_url, pid}`` to a ready file once it serves; the parent waits for
that and for ``/health``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bridge.config import NGROK_TOKEN_ENV, WORKER_SECRET_ENV
from bridge.errors import BackendUnavailable, ValidationError


@dataclass
class DetachedWorker:
    """A worker process started by ``start_detached``."""

    pid: int
    url: str
    public_url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the worker's process group (SIGTERM, then SIGKILL)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()


def _log_tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def start_detached(
    secret: str,
    *,
    log_path: str | Path,
    port: int = 0,
    host: str = "127.0.0.1",
    backend: str = "local",
    model: str | None = None,
    quantization: str | None = None,
    tunnel: str = "none",
    ngrok_token: str | None = None,
    echo_delay: float = 0.0,
    timeout: float = 600.0,
) -> DetachedWorker:
    """Start the worker in its own session (it outlives this kernel); wait until /health is ok."""
    if not secret:
        raise ValidationError("the worker needs a secret", details={"field": "worker_secret"})
    log_path = Path(log_path)
    ready_file = log_path.with_suffix(".ready.json")
    ready_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "colab_runtime.worker", "--host", host, "--port", str(port)]
    cmd += ["--backend", backend, "--ready-file", str(ready_file), "--tunnel", tunnel]
    cmd += ["--echo-delay", str(echo_delay)]
    cmd += ["--model", model] if model else []
    cmd += ["--quantization", quantization] if quantization else []
    env = {**os.environ, WORKER_SECRET_ENV: secret}
    if ngrok_token:
        env[NGROK_TOKEN_ENV] = ngrok_token
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
    worker = DetachedWorker(process.pid, "", "", log_path, process)
    try:
        return _wait_ready(worker, process, ready_file, timeout)
    except BaseException:  # interrupted (a launch timeout) or failed: no worker left behind
        worker.stop()
        raise


def _wait_ready(
    worker: DetachedWorker, process: subprocess.Popen[bytes], ready_file: Path, timeout: float
) -> DetachedWorker:
    log_path = worker.log_path
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BackendUnavailable(
                f"the worker exited with status {process.returncode}:\n{_log_tail(log_path)}"
            )
        if ready_file.exists():
            ready = json.loads(ready_file.read_text())
            worker.url, worker.public_url = ready["url"], ready["public_url"]
            try:
                if httpx.get(worker.url + "/health", timeout=2.0).status_code == 200:
                    return worker
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise BackendUnavailable(f"the worker did not start in {timeout:.0f}s:\n{_log_tail(log_path)}")

"""Find the local service, or start ``bridge serve`` in the background (notebooks' first cell).

Only a loopback URL is started here; a service on another machine must already run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bridge.errors import BridgeError, ServiceUnreachable
from bridge.sdk.client import normalize_base_url
from bridge.urls import is_loopback


@dataclass
class Service:
    """A service that answers at ``url``; ``process`` is set when this code started it."""

    url: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    stopped: bool = False  # stop() ended the server this code started

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server if this code started it (a no-op otherwise)."""
        process, self.process = self.process, None
        if process is None:
            return
        self.stopped = True
        if process.poll() is not None:
            return
        # ^C first (`bridge serve` then shuts down cleanly), but a parent that ignores SIGINT
        # (a background shell job) passes that on to the child: then SIGTERM, then SIGKILL.
        for sig, wait in ((signal.SIGINT, timeout / 2), (signal.SIGTERM, timeout / 2),
                          (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __repr__(self) -> str:
        how = (f"stopped, log {self.log_path}" if self.stopped else
               f"started here, log {self.log_path}" if self.started_here else "already running")
        return f"Service({self.url!r}, {how})"


def healthy(url: str, timeout: float = 2.0) -> bool:
    """True when a Compute Bridge service answers ``/healthz`` at ``url``."""
    try:
        response = httpx.get(f"{normalize_base_url(url)}/healthz", timeout=timeout)
        return response.status_code == 200 and response.json().get("status") == "ok"
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def serve_command(host: str, port: int, home: str | Path | None = None) -> list[str]:
    """``bridge serve`` from this Python's environment."""
    script = Path(sys.executable).with_name("bridge")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "local_api.cli.main"]
    command += ["serve", "--host", host, "--port", str(port)]
    return command + (["--home", str(home)] if home else [])


def find_or_start(
    base_url: str | None = None,
    *,
    start: bool = True,
    home: str | Path | None = None,
    timeout: float = 180.0,
) -> Service:
    """The service at ``base_url`` (default $BRIDGE_URL or http://127.0.0.1:5000); when
    nothing answers there and ``start``, run ``bridge serve`` on that port and wait for it."""
    from bridge.config import ClientSettings

    url = normalize_base_url(base_url or ClientSettings.from_env().url)
    if healthy(url):
        return Service(url)
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    if not start or not is_loopback(host) or parts.scheme != "http":
        where = "start it with `bridge serve` (or `make run`)" if is_loopback(host) else \
            "it is not on this machine, so it cannot be started from here"
        raise ServiceUnreachable(f"cannot reach the service at {url}; {where}",
                                 details={"url": url})
    # mkstemp: a new file only this user can read (O_EXCL), never one planted in /tmp
    fd, name = tempfile.mkstemp(prefix=f"compute-bridge-{port}-", suffix=".log")
    log_path = Path(name)
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(serve_command(host, port, home), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    service = Service(url, process, log_path)
    deadline = time.monotonic() + timeout
    while not healthy(url, timeout=1.0):
        code = process.poll()
        if code is not None:
            tail = log_path.read_text(errors="replace")[-800:].strip()
            raise BridgeError(f"`bridge serve` stopped (exit code {code}) before answering; "
                              f"its log ({log_path}) ends:\n{tail}")
        if time.monotonic() > deadline:
            service.stop()
            raise ServiceUnreachable(f"`bridge serve` did not answer at {url} within "
                                     f"{timeout:.0f} s; see {log_path}", details={"url": url})
        time.sleep(0.3)
    return service

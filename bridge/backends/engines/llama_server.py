"""One ``llama-server`` subprocess (llama.cpp's own HTTP server) per loaded GGUF model.

Modelled on Ollama's ``llm/llama_server.go`` (since ollama/ollama PR #16031): find the binary,
build a short argument list (``--model``, ``-c ctx×parallel``, ``-np parallel``, ``--no-webui``,
``--offline``), wait for ``/health``, talk to the server over its own HTTP API, stop it with the
model. Differences, each for this service's accounts and limits to stay the only way in:

- it listens on a Unix socket in a private (0700) directory, not on a TCP port, so no other
  local user and no web page can reach it; its API key (``LLAMA_API_KEY``, passed in the
  environment, which other users cannot read, unlike the command line) guards it as well;
- it is started from one long-lived thread with ``PR_SET_PDEATHSIG`` = SIGKILL, so the kernel
  kills it when this process dies, even by SIGKILL (the signal follows the *thread* that
  forked, hence the one spawner thread that lives as long as the process);
- ``close()`` and an ``atexit`` hook stop it (SIGTERM, then SIGKILL after 5 s).

Sizing (``plan``), as Ollama sizes ``NumCtx × parallel``: each slot gets ``context`` tokens
(default 4096, capped by the model's training context); slots default to the largest of
8, 4, 2, 1 whose KV cache (f16 K and V: 2 × layers × KV width × 2 bytes a token, read from the
GGUF's metadata) plus the weights fit in half the memory available now (psutil).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bridge.errors import BackendUnavailable, InvalidModel, NotSupported

BUILD_HINT = "make llama-server (builds llama.cpp's server once, ~7 min on 2 cores)"
START_TIMEOUT = 120.0  # seconds a model may take to load before the start is called failed
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
DEFAULT_CONTEXT = 4096  # tokens per slot unless BRIDGE_CONTEXT_LENGTH or num_ctx say otherwise
_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()
_running: weakref.WeakSet[LlamaServer] = weakref.WeakSet()


def find_binary(configured: str = "") -> Path | None:
    """The llama-server to run: ``configured`` (BRIDGE_LLAMA_SERVER), else the one beside this
    Python (``make install`` copies it into the venv's bin/), else one on PATH."""
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_file() and os.access(path, os.X_OK) else None
    beside = Path(sys.executable).parent / "llama-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("llama-server")
    return Path(found) if found else None


def missing(configured: str = "") -> str | None:
    """Why llama.cpp cannot serve here (with how to get it), or None when it can."""
    if sys.platform != "linux":
        return "the llama.cpp engine runs llama-server on Linux only here"
    if find_binary(configured) is None:
        where = f"BRIDGE_LLAMA_SERVER={configured} is not an executable file" if configured \
            else "no llama-server binary beside this Python or on PATH"  # fmt: skip
        return f"{where}; build it with: {BUILD_HINT}"
    return None


@dataclass(frozen=True)
class Plan:
    """How a model is served: slots, tokens of context per slot, threads; ``trained``: the
    model's training context, the most ``context`` may grow to (0: unknown)."""

    parallel: int
    context: int
    threads: int
    trained: int = 0


def gguf_shape(gguf: Path) -> dict[str, int]:
    """Training context, layers and KV width of a GGUF (its metadata; 0 where absent)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(gguf)
    except Exception as exc:  # ValueError/IndexError/struct.error: not a whole GGUF
        raise InvalidModel(f"{gguf.name} is not a GGUF file llama.cpp can load "
                           f"({type(exc).__name__}: {str(exc)[:160]})") from exc
    fields = reader.fields
    arch = fields["general.architecture"].contents() if "general.architecture" in fields else ""

    def number(key: str) -> int:
        value = fields[f"{arch}.{key}"].contents() if f"{arch}.{key}" in fields else 0
        return int(value[0] if isinstance(value, list) else value or 0)

    heads, kv_heads = number("attention.head_count"), number("attention.head_count_kv")
    head_dim = number("attention.key_length") or (number("embedding_length") // max(1, heads))
    return {"context": number("context_length"), "layers": number("block_count"),
            "kv_width": (kv_heads or heads) * head_dim}  # fmt: skip


def plan(gguf: Path, *, parallel: int = 0, context: int = 0, threads: int = 0) -> Plan:
    """Slots, per-slot context and threads for ``gguf`` (0: sized from the machine, above)."""
    import psutil

    shape = gguf_shape(gguf)
    trained = shape["context"] or DEFAULT_CONTEXT
    context = min(context or DEFAULT_CONTEXT, trained)
    if parallel < 1:
        per_token = 2 * shape["layers"] * shape["kv_width"] * 2
        budget = psutil.virtual_memory().available // 2 - gguf.stat().st_size
        parallel = next((n for n in (8, 4, 2) if n * context * per_token <= budget), 1)
    return Plan(parallel, context, threads or default_threads(), shape["context"])


def default_threads() -> int:
    """Cores this process may use, at most 8 (decoding scales with physical cores)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, usable or 1))


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGKILL when the spawning thread ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Popen on the one spawner thread (it lives as long as the process: see above)."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(1, thread_name_prefix="llama-server-spawner")

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                    start_new_session=True)  # fmt: skip

    return _spawner.submit(start).result()


class LlamaServer:
    """A running ``llama-server`` for one GGUF; ``client`` talks to it (Unix socket + key)."""

    def __init__(self, gguf: Path, how: Plan, *, binary: str = "") -> None:
        found = find_binary(binary)
        if found is None:
            raise NotSupported(missing(binary) or "llama-server is missing",
                               details={"install": BUILD_HINT})  # fmt: skip
        self.gguf, self.plan = gguf, how
        self.dir = Path(tempfile.mkdtemp(prefix="bridge-llama-"))  # 0700: this user only
        self.socket, self.log = self.dir / "llama.sock", self.dir / "llama-server.log"
        key = secrets.token_urlsafe(32)
        args = [str(found), "--model", str(gguf), "--host", str(self.socket),
                "--ctx-size", str(how.context * how.parallel), "--parallel", str(how.parallel),
                "--threads", str(how.threads), "--threads-batch", str(how.threads),
                "--no-webui", "--offline", "--metrics", "--jinja", "--no-kv-unified"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_")}
        env["LLAMA_API_KEY"] = key
        self.process = _spawn(args, env, self.log)
        _running.add(self)
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://llama-server",
            headers={"Authorization": f"Bearer {key}"}, timeout=httpx.Timeout(30.0, read=None),
            limits=httpx.Limits(max_connections=how.parallel + 8),
        )  # fmt: skip
        try:
            self._wait_healthy()
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_reason(self) -> str:
        """How the process ended (``exit 1``, ``killed by SIGKILL``), or ``running``."""
        code = self.process.poll()
        if code is None:
            return "running"
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"

    def log_tail(self, lines: int = 6) -> str:
        """The last lines llama-server wrote (its own words on why it stopped)."""
        with contextlib.suppress(OSError):
            text = self.log.read_text(errors="replace").strip().splitlines()
            return " | ".join(line.strip() for line in text[-lines:])[:600]
        return ""

    def _wait_healthy(self) -> None:
        """Until ``/health`` answers 200 (503 while loading); InvalidModel when it exits."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.alive():
                raise InvalidModel(
                    f"llama.cpp could not load {self.gguf.name} ({self.exit_reason()}): "
                    f"{self.log_tail()}", details={"file": self.gguf.name})  # fmt: skip
            with contextlib.suppress(httpx.TransportError):
                if self.client.get("/health", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise BackendUnavailable(f"llama-server did not load {self.gguf.name} within "
                                 f"{START_TIMEOUT:.0f} s: {self.log_tail()}")  # fmt: skip

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON to the server, its JSON answer; BackendUnavailable on any failure."""
        try:
            answer = self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(self.fault(exc)) from exc
        if answer.status_code != 200:
            raise BackendUnavailable(f"llama-server answered {answer.status_code} on {path}: "
                                     f"{answer.text[:300]}")  # fmt: skip
        return answer.json()

    def fault(self, exc: BaseException) -> str:
        """A request that failed: the process's end when it died, else the transport error."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1.0)  # a dying process closes its sockets before it is reaped
        if not self.alive():
            return f"llama-server stopped ({self.exit_reason()}): {self.log_tail(3)}"
        return f"llama-server request failed: {type(exc).__name__}: {exc}"[:400]

    def close(self) -> None:
        """Stop the process (SIGTERM, SIGKILL after 5 s) and remove its private directory."""
        _running.discard(self)
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if hasattr(self, "client"):
            self.client.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _forget_spawner() -> None:
    """A forked child (a gunicorn worker) has no spawner thread: it starts its own."""
    global _spawner
    _spawner = None


os.register_at_fork(after_in_child=_forget_spawner)


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.close()

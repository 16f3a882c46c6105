"""The real service as a process (`bridge serve`, free loopback port) for crash and TLS tests.

It runs in its own process group: gunicorn's master and workers are killed together
(``kill_all``), as a crash or the OOM killer of a container would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BRIDGE = str(Path(sys.executable).with_name("bridge"))


def kill_all(process: subprocess.Popen[str]) -> None:
    """SIGKILL to the server and its workers at once."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@contextmanager
def serve(home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[
        tuple[subprocess.Popen[str], str]]:
    """Start `bridge serve --port 0 ARGS`; yields (process, base URL); stops it at the end."""
    variables = {**os.environ, "BRIDGE_HOME": str(home), "BRIDGE_PREPARE_MODEL": "0",
                 "BRIDGE_KEEP_ALIVE": "0", **(env or {})}
    log_path = home.parent / f"{home.name}-serve.log"
    log = log_path.open("a")
    process = subprocess.Popen(
        [BRIDGE, "serve", "--port", "0", *args], stdout=subprocess.PIPE, stderr=log, text=True,
        env=variables, start_new_session=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening on" in first, (first, log_path.read_text())
        process.stdout.readline()  # "Data directory: ..."
        yield process, first.split()[-1]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill_all(process)
        if process.stdout is not None:
            process.stdout.close()
        log.close()

"""The llama.cpp engine's subprocess (issue 19), on the real default GGUF and the real
llama-server binary: where it listens, its death (mid-stream, before the first token, with the
service SIGKILLed), cancellation reaching it, unload, a file it cannot load, slots."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.errors import BackendUnavailable, InvalidModel
from bridge.models.store import ModelStore
from bridge.types import GenerateRequest, Token, collect

pytestmark = pytest.mark.model
STORY = "Tell me a very long story about a lighthouse keeper and the sea."


def story(max_tokens: int = 400) -> GenerateRequest:
    return GenerateRequest(DEFAULT_MODEL_ID, prompt=STORY, temperature=0, max_tokens=max_tokens,
                           repetition_penalty=1.0)  # fmt: skip


@pytest.fixture
def own(tmp_path: Path) -> Iterator[LocalBackend]:
    """A backend of this test's own (its process may be killed): 2 slots, 2 threads."""
    backend = LocalBackend(ModelStore(tmp_path / "models"), keep_alive=None, engine="llama.cpp",
                           threads=2, parallel=2)  # fmt: skip
    backend.load(DEFAULT_MODEL_ID)
    yield backend
    backend.close()


def server_of(backend: LocalBackend) -> Any:
    return backend._slots[DEFAULT_MODEL_ID].engine.server  # type: ignore[attr-defined]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return gone(pid)


def test_it_listens_on_a_private_socket_and_wants_its_key(llama_backend: LocalBackend) -> None:
    server = server_of(llama_backend)
    assert stat.S_ISSOCK(server.socket.stat().st_mode)
    assert stat.S_IMODE(server.dir.stat().st_mode) == 0o700  # no other local user gets in
    process = psutil.Process(server.pid)
    assert process.name().startswith("llama-server")
    assert not [c for c in process.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    key = server.client.headers["Authorization"].split()[1]
    assert key not in " ".join(process.cmdline())  # the command line is world-readable
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(server.socket)),
                      base_url="http://x") as bare:  # fmt: skip
        assert bare.get("/health").status_code == 200
        assert bare.post("/completion", json={"prompt": "Hi", "n_predict": 1}).status_code == 401


def test_killed_mid_stream_ends_with_a_clear_error_and_restarts(own: LocalBackend) -> None:
    pid = server_of(own).pid
    events = own.generate(story())
    assert isinstance(next(events), Token)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(BackendUnavailable, match="killed by SIGKILL"):
        collect(events)
    answer = collect(own.generate(story(8)))  # the next request starts a new process
    assert answer.done.completion_tokens == 8 and answer.text
    assert server_of(own).pid != pid
    info = own.runtime_info
    assert info["engine_restarts"] == 1
    assert info["engine_faults"][-1]["reason"] == "killed by SIGKILL"
    assert info["llama_servers"][DEFAULT_MODEL_ID]["state"] == "running"


def test_killed_before_the_first_token_fails_over_to_a_new_process(own: LocalBackend) -> None:
    expected = collect(own.generate(story(12))).text
    old = server_of(own)
    old.process.kill()
    old.process.wait(5)
    assert collect(own.generate(story(12))).text == expected
    assert own.runtime_info["engine_faults"][-1]["reason"] == "killed by SIGKILL"


def cpu_seconds(pid: int, during: float = 1.0) -> float:
    process = psutil.Process(pid)
    before = sum(process.cpu_times()[:2])
    time.sleep(during)
    return sum(process.cpu_times()[:2]) - before


def test_a_client_that_goes_away_stops_its_generation_there(own: LocalBackend) -> None:
    server = server_of(own)

    def decoding() -> bool:
        return any(slot["is_processing"] for slot in server.client.get("/slots").json())

    events = own.generate(story(2000))
    assert isinstance(next(events), Token)
    busy = cpu_seconds(server.pid)
    events.close()
    deadline = time.monotonic() + 5  # seen: 0.6-0.9 s until the server notices the close
    while decoding() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not decoding()
    idle = cpu_seconds(server.pid)
    # decoding used the CPU (up to 2 s/s with 2 threads; far less on a machine running other
    # work), and after the close the server is idle: the drop is what the test is about
    assert busy > 0.1 and idle < 0.1 and idle * 3 < busy, (busy, idle)


def test_unload_and_close_stop_the_process(own: LocalBackend) -> None:
    server = server_of(own)
    own.unload(DEFAULT_MODEL_ID)
    assert wait_gone(server.pid, 1) and not server.dir.exists()
    own.load(DEFAULT_MODEL_ID, parallel=1)
    again = server_of(own)
    assert own.runtime_info["llama_servers"][DEFAULT_MODEL_ID]["parallel"] == 1
    own.close()
    assert wait_gone(again.pid, 1)


KEEPER = """
import sys, time
from pathlib import Path
from bridge.backends.local import LocalBackend
from bridge.models.store import ModelStore
backend = LocalBackend(ModelStore(Path(sys.argv[1])), keep_alive=None, engine="llama.cpp",
                       threads=1, parallel=1)
backend.load("smollm2-135m-instruct")
print(backend.runtime_info["llama_servers"]["smollm2-135m-instruct"]["pid"], flush=True)
time.sleep(120)
"""


def test_a_service_killed_with_sigkill_leaves_no_llama_server(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", KEEPER, str(tmp_path)],
                          stdout=subprocess.PIPE, text=True) as keeper:  # fmt: skip
        try:
            assert keeper.stdout is not None
            pid = int(keeper.stdout.readline())
            assert not gone(pid)
            keeper.kill()  # SIGKILL: no atexit, no finally
            keeper.wait(10)
            assert wait_gone(pid), "llama-server outlived the service"
        finally:
            keeper.kill()


def test_a_file_llama_cpp_cannot_load_is_invalid_model(tmp_path: Path) -> None:
    import numpy as np
    from gguf import GGUFWriter

    folder = tmp_path / "odd"
    folder.mkdir()
    writer = GGUFWriter(folder / "odd.gguf", "no-such-architecture")
    writer.add_tensor("weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    store = ModelStore(tmp_path / "models")
    store.register("odd", folder)
    backend = LocalBackend(store, keep_alive=None, engine="llama.cpp", threads=1, parallel=1)
    started = time.monotonic()
    with pytest.raises(InvalidModel, match="could not load odd.gguf") as caught:
        backend.load("odd")
    assert time.monotonic() - started < 30
    assert caught.value.status == 422 and caught.value.code == "INVALID_MODEL"
    (folder / "odd.gguf").write_bytes(b"GGUF" + b"\0" * 64)  # cut short: refused before start
    with pytest.raises(InvalidModel):
        backend.load("odd")
    assert backend.loaded_models() == []

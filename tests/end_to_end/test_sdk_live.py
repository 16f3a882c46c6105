"""bridge.Client over real sockets: the AQ document's example as written, the README snippet,
token expiry mid-session, a service that is down, a connection cut mid-stream, and attaching
a real worker app on loopback (colab.connect)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from bridge import Client
from bridge.errors import (
    BackendUnavailable,
    Forbidden,
    ServiceUnreachable,
    Unauthorized,
    ValidationError,
)
from bridge.models.store import ModelStore
from bridge.router import Router
from colab_runtime.worker import WorkerServer, create_worker_app
from tests.support.app import LiveServer
from tests.support.fakes import FakeBackend, LocalFake

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse"
SECRET = "a-worker-secret-of-some-length"

# /work/shared/spec/alpha-q-api.md, "SDK Examples / Python", copied verbatim.
AQ_EXAMPLE = '''\
from alpha_q import AlphaQClient

client = AlphaQClient(api_key="your_api_key")

# Chat completion
response = client.chat.completion(
    prompt="Hello, how are you?",
    model_id="gpt-3.5-turbo"
)
print(response.completion)

# System status
status = client.system.status()
print(status.resources)
'''


@pytest.fixture
def fake() -> LocalFake:
    return LocalFake(loaded=True)


@pytest.fixture
def app(make_app: Callable[..., Flask], home: Path, fake: LocalFake, tmp_path: Path) -> Flask:
    return make_app({"home": home, "access_token_ttl": 1}, router=Router(fake), local=fake,
                    store=ModelStore(tmp_path / "models"))


@pytest.fixture
def alice(live_server: LiveServer) -> Iterator[Client]:
    with Client(live_server.url, username="alice", password=PASSWORD) as client:
        client.auth.register("alice", "alice@example.org", PASSWORD)
        yield client


@pytest.fixture
def gpu() -> Iterator[FakeBackend]:
    backend = FakeBackend("gpu", default="I am well, thank you for asking!",
                          models=["gpt-3.5-turbo"])
    yield backend
    backend.release()


@pytest.fixture
def worker(gpu: FakeBackend) -> Iterator[WorkerServer]:
    server = WorkerServer(create_worker_app(gpu, SECRET, runtime_info={
        "type": "jupyter", "device": "cuda", "gpu": "Tesla T4",
        "memory": {"gpu_total_mb": 15360}})).start()
    yield server
    server.stop()


def test_the_alpha_q_example_runs_as_written(
    alice: Client, live_server: LiveServer, worker: WorkerServer, gpu: FakeBackend,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Only the import and class name change (and the key placeholder gets a real key);
    gpt-3.5-turbo is served by an attached worker, as a user with such a worker would."""
    attached = alice.colab.connect(worker_url=worker.url, worker_secret=SECRET, name="t4")
    assert (attached.status, attached.worker, attached.runtime_info.gpu) == (
        "connected", "t4", "Tesla T4")
    key = alice.auth.create_api_key("aq-example").key
    code = (AQ_EXAMPLE.replace("from alpha_q import AlphaQClient", "from bridge import Client")
            .replace("AlphaQClient(", "Client(").replace("your_api_key", key))
    assert code.count("\n") == AQ_EXAMPLE.count("\n")
    monkeypatch.setenv("BRIDGE_URL", live_server.url)  # AQ's example names no URL
    exec(compile(code, "alpha-q-example.py", "exec"), {})
    completion, resources = capsys.readouterr().out.splitlines()
    assert completion == "I am well, thank you for asking!"
    assert gpu.history[-1].messages[-1].content == "Hello, how are you?"
    assert re.match(r"\{'cpu': \{.*'usage': [\d.]+", resources), resources
    assert "'memory': {" in resources and "'gpu': None" in resources
    assert [b.name for b in alice.system.status().backends] == ["local", "t4"]
    assert alice.colab.disconnect("t4").status == "disconnected"
    assert [b.name for b in alice.system.status().backends] == ["local"]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_connect_refusals_are_typed(alice: Client, live_server: LiveServer,
                                    worker: WorkerServer) -> None:
    with pytest.raises(ValidationError):
        alice.colab.connect(worker_url=worker.url)  # no secret
    with pytest.raises(ValidationError, match="refused the worker_secret") as wrong:
        alice.colab.connect(worker_url=worker.url, worker_secret="x" * 20)
    assert wrong.value.details == {"field": "worker_secret"}
    with pytest.raises(BackendUnavailable):
        alice.colab.connect(worker_url=closed_port_url(), worker_secret=SECRET)
    with Client(live_server.url, username="bob", password=PASSWORD) as bob:
        bob.auth.register("bob", "bob@example.org", PASSWORD)
        with pytest.raises(Forbidden):
            bob.colab.connect(worker_url=worker.url, worker_secret=SECRET)
    assert [b.name for b in alice.system.status().backends] == ["local"]


def test_the_sdk_pages_first_snippet_runs_as_written(
    live_server: LiveServer, fake: LocalFake, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (ROOT / "docs" / "guides" / "python-sdk.md").read_text()  # the SDK's docs page
    snippet = page.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in snippet.splitlines() if line.strip()]) == 5
    fake.queue("The sea is wide and blue.")
    code = snippet.replace("http://127.0.0.1:5000", live_server.url)
    exec(compile(code, "python-sdk-snippet.py", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("The sea is wide and blue. ") and "local" in out


def test_an_expired_access_token_is_renewed_mid_session(
    alice: Client, live_server: LiveServer, fake: LocalFake
) -> None:
    first = alice.chat.completion(prompt="Hi").conversation_id
    old_access, old_refresh = alice.access_token, alice.refresh_token
    time.sleep(2.1)  # access_token_ttl is 1 s here
    expired = httpx.get(f"{live_server.url}/api/v1/conversations",
                        headers={"Authorization": f"Bearer {old_access}"})
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    assert [c.id for c in alice.conversations.list()] == [first]  # no error: refreshed
    assert alice.access_token != old_access and alice.refresh_token != old_refresh
    time.sleep(2.1)
    assert "".join(alice.chat.stream("Hi again")) == "Hello from the fake backend."
    alice.refresh_token = "not-a-refresh-token"  # refresh refused too: logs in again
    time.sleep(2.1)
    assert alice.auth.session().username == "alice"
    with Client(live_server.url, access_token=alice.access_token) as borrowed:
        time.sleep(2.1)
        with pytest.raises(Unauthorized, match="log in again"):
            borrowed.models.list()  # nothing to renew with


def test_a_service_that_is_down_is_one_clear_error(app: Flask) -> None:
    with LiveServer(app) as server:
        url = server.url
    with Client(url, api_key="cb_x_y") as client:
        with pytest.raises(ServiceUnreachable) as down:
            client.system.status()
        with pytest.raises(ServiceUnreachable):
            client.chat.stream("Hi")
    assert str(down.value).startswith(f"cannot reach the service at {url} (")
    assert down.value.details["url"] == url


class CuttableProxy:
    """A TCP relay on loopback in front of a server; ``cut()`` drops its connections."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            far = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [near, far]
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_a_connection_cut_mid_stream_raises_one_typed_error(
    alice: Client, live_server: LiveServer, fake: LocalFake
) -> None:
    key = alice.auth.create_api_key("cut").key
    proxy = CuttableProxy(int(live_server.url.rsplit(":", 1)[1]))
    fake.hang_after = 2
    try:
        with Client(proxy.url, api_key=key) as client:
            stream = client.chat.stream("Tell me a story")
            assert [next(stream), next(stream)] == ["Hello", " from"]
            assert fake.hanging.wait(10)
            proxy.cut()
            with pytest.raises(ServiceUnreachable, match="after 2 tokens") as cut:
                next(stream)
            assert cut.value.details["tokens_received"] == 2
            with pytest.raises(StopIteration):
                next(stream)  # the stream is over, not stuck
    finally:
        proxy.close()
        fake.release()


def test_requests_from_threads_share_one_renewal(alice: Client) -> None:
    alice.auth.session()
    time.sleep(2.1)
    errors: list[Any] = []

    def call() -> None:
        try:
            alice.models.list()
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []

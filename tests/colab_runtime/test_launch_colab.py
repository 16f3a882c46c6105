"""A launch through the Colab runtime-proxy stand-in (a real Jupyter server behind it): the
headers the proxy wants, and a VM that answers 502 while it boots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bridge.errors import BackendUnavailable, Unauthorized
from colab_runtime.colab import Assignment, ColabClient
from colab_runtime.launch import COLAB_PROXY_HEADER, COLAB_PROXY_QUERY, RemoteRuntime, launch_worker
from tests.support.fake_colab import ColabState, create_colab_app
from tests.support.fake_google import LoopbackServer
from tests.support.remote import Jupyter

NOTEBOOK = Path(__file__).resolve().parents[1] / "data" / "worker_probe.ipynb"


@pytest.fixture
def assigned(jupyter: Jupyter) -> Iterator[tuple[ColabState, Assignment]]:
    state = ColabState(runtime_url=jupyter.url)
    with LoopbackServer(create_colab_app(state)) as server, requests.Session() as session:
        (jupyter.root / "colab-standin-url").write_text(server.url)
        yield state, ColabClient(session, base_url=server.url).assign()


def run(runtime: RemoteRuntime, tmp_path: Path) -> str:
    result = launch_worker(NOTEBOOK, {"model": "m", "worker_port": 9}, runtime=runtime,
                           output_path=tmp_path / "out.ipynb", retry_backoff=0.05)
    return result.worker_url


def test_a_booting_vm_is_retried_then_runs(assigned, tmp_path: Path) -> None:
    state, a = assigned
    state.booting = 2  # the first two proxy checks answer 502
    assert run(RemoteRuntime.colab(a.proxy_url, a.proxy_token), tmp_path).endswith(":9")
    assert state.booting == 0


def test_a_vm_that_never_comes_up_is_given_up_after_three_tries(assigned, tmp_path) -> None:
    state, a = assigned
    state.booting = 100
    with pytest.raises(BackendUnavailable, match="502"):
        run(RemoteRuntime.colab(a.proxy_url, a.proxy_token), tmp_path)
    assert 100 - state.booting <= 6  # three kernel starts, not more


def test_the_proxy_wants_the_client_agent_header(assigned, tmp_path: Path) -> None:
    _, a = assigned
    bare = RemoteRuntime(a.proxy_url, headers={COLAB_PROXY_HEADER: a.proxy_token},
                         ws_query={COLAB_PROXY_QUERY: a.proxy_token})
    with pytest.raises(Unauthorized):
        run(bare, tmp_path)

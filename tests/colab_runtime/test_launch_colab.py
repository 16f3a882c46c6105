"""A launch through the Colab runtime-proxy stand-in (a real Jupyter server behind it): the
headers the proxy wants, a VM that answers 502 while it boots, and an expired or stale proxy
token (an empty 404, or a 401) told apart from every other refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bridge.errors import BackendUnavailable, Unauthorized
from colab_runtime import wheel
from colab_runtime.colab import Assignment, ColabClient
from colab_runtime.launch import COLAB_PROXY_HEADER, COLAB_PROXY_QUERY, RemoteRuntime, launch_worker
from colab_runtime.proxy import ProxyTokenRefused
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


def test_the_contents_api_takes_the_token_as_the_query_parameter_alone(assigned) -> None:
    _, a = assigned  # as Google's CLI uploads (contents.py): no header at all
    body = {"type": "file", "format": "text", "content": "hello"}
    answer = requests.put(f"{a.proxy_url}/api/contents/q.txt", json=body, timeout=30,
                          params={"authuser": "0", COLAB_PROXY_QUERY: a.proxy_token})
    assert answer.status_code == 201, answer.text
    bare = requests.put(f"{a.proxy_url}/api/contents/q.txt", json=body, timeout=30,
                        headers={COLAB_PROXY_HEADER: a.proxy_token})  # no client agent
    assert bare.status_code == 403


@pytest.mark.parametrize("refusal", [404, 401])
def test_an_expired_token_is_a_proxy_refusal_on_upload_and_kernel_start(
    assigned, tmp_path: Path, refusal: int
) -> None:
    state, a = assigned
    state.proxy_refusal = refusal
    state.expire_proxy_tokens(a.endpoint)
    runtime = RemoteRuntime.colab(a.proxy_url, a.proxy_token)
    stale = requests.get(f"{a.proxy_url}/api/status", headers=runtime.headers, timeout=30)
    assert (stale.status_code, stale.content) == (refusal, b"")  # the front end's answer
    built = tmp_path / "x-0-py3-none-any.whl"
    built.write_bytes(b"PK")
    with pytest.raises(ProxyTokenRefused, match=f"wheel upload \\({refusal}\\)") as caught:
        wheel.upload(runtime.url, runtime.headers, built, backoff=0.05)
    assert caught.value.details == {"reason": "proxy_token", "upstream_status": refusal}
    assert a.proxy_token not in caught.value.message
    with pytest.raises(ProxyTokenRefused, match=f"kernel start \\({refusal}\\)"):
        run(runtime, tmp_path)

"""papermill runs of a worker-shaped notebook on a real `jupyter server` on loopback and locally."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import nbformat
import papermill
import pytest
import requests
import websocket
from jupyter_core.utils import run_sync
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.gateway.managers import GatewayKernelManager
from nbformat.v4 import new_code_cell, new_notebook, new_output
from websockets.http11 import Request
from websockets.sync.server import ServerConnection, serve

from bridge.errors import BackendUnavailable, Unauthorized, ValidationError
from colab_runtime import launch
from colab_runtime.launch import (
    RemoteRuntime,
    format_worker_record,
    launch_worker,
    parse_worker_record,
)
from tests.support.remote import Jupyter, free_port

NOTEBOOK = Path(__file__).resolve().parents[1] / "data" / "worker_probe.ipynb"


def kernels(url: str, token: str) -> list[dict[str, object]]:
    answer = requests.get(
        url + "/api/kernels", headers={"Authorization": f"token {token}"}, timeout=5
    )
    answer.raise_for_status()
    return list(answer.json())


def test_remote_run_passes_parameters_and_reads_the_record(
    jupyter: Jupyter, tmp_path: Path
) -> None:
    url, token, root = jupyter.url, jupyter.token, jupyter.root
    out = tmp_path / "out.ipynb"
    result = launch_worker(
        NOTEBOOK,
        {"model": "smol", "worker_port": 9123, "extra": {"tags": ["a", 1]}},
        runtime=RemoteRuntime(url, token=token),
        output_path=out,
    )
    assert result.worker_url == "http://127.0.0.1:9123"
    assert result.runtime_info["model"] == "smol"
    assert result.runtime_info["extra"] == {"tags": ["a", 1]}
    assert result.runtime_info["cwd"] == str(root)  # the kernel ran in the server's root
    assert result.output_notebook_path == out
    executed = nbformat.read(out, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    assert kernels(url, token) == []  # the run shut its kernel down
    assert not GatewayClient.initialized()  # the singleton was restored
    assert (
        "KERNEL_LAUNCH_TIMEOUT" not in os.environ
        or os.environ.get("KERNEL_LAUNCH_TIMEOUT") == _saved_launch_timeout
    )


_saved_launch_timeout = os.environ.get("KERNEL_LAUNCH_TIMEOUT")


def test_remote_raising_cell_surfaces_its_error(jupyter: Jupyter, tmp_path: Path) -> None:
    url, token = jupyter.url, jupyter.token
    with pytest.raises(BackendUnavailable, match="RuntimeError: worker could not start m1") as err:
        launch_worker(
            NOTEBOOK,
            {"model": "m1", "fail": True},
            runtime=RemoteRuntime(url, token=token),
            output_path=tmp_path / "o.ipynb",
        )
    assert err.value.details["ename"] == "RuntimeError"
    assert err.value.details["output_notebook_path"] == str(tmp_path / "o.ipynb")


def test_wrong_token_is_unauthorized(jupyter: Jupyter, tmp_path: Path) -> None:
    url = jupyter.url
    with pytest.raises(Unauthorized, match="refused the token"):
        launch_worker(
            NOTEBOOK,
            {},
            runtime=RemoteRuntime(url, token="wrong"),
            output_path=tmp_path / "o.ipynb",
        )


def test_token_in_extra_headers_works_too(jupyter: Jupyter, tmp_path: Path) -> None:
    url, token = jupyter.url, jupyter.token
    runtime = RemoteRuntime(
        url, headers={"Authorization": f"token {token}"}, ws_query={"unused": "1"}
    )
    result = launch_worker(
        NOTEBOOK, {"worker_port": 7001}, runtime=runtime, output_path=tmp_path / "o.ipynb"
    )
    assert result.worker_url == "http://127.0.0.1:7001"


def test_stock_gateway_client_websocket_is_refused(jupyter: Jupyter, tmp_path: Path) -> None:
    """The upstream fact the launcher works around; if this starts passing, drop the fix."""
    url, token = jupyter.url, jupyter.token
    with launch._gateway(RemoteRuntime(url, token=token)), pytest.raises(Exception) as err:
        papermill.execute_notebook(
            str(NOTEBOOK),
            str(tmp_path / "o.ipynb"),
            {},
            progress_bar=False,
            kernel_manager_class=GatewayKernelManager,
        )
    # Upstream's stop_channels then trips on the missing socket; the 403 is in the chain.
    chain = [err.value]
    while chain[-1].__context__ is not None:
        chain.append(chain[-1].__context__)
    refused = [e for e in chain if isinstance(e, websocket.WebSocketBadStatusException)]
    assert refused and refused[0].status_code == 403
    assert not GatewayClient.initialized()


def test_client_that_never_opened_its_socket_stops_cleanly() -> None:
    client = launch._RuntimeKernelClient(kernel_id="never-started")
    client.stop_channels()
    assert client.channel_socket is None


def test_unreachable_runtime_is_backend_unavailable(tmp_path) -> None:
    with pytest.raises(BackendUnavailable, match="runtime failed"):
        launch_worker(
            NOTEBOOK,
            {},
            runtime=RemoteRuntime(f"http://127.0.0.1:{free_port()}"),
            output_path=tmp_path / "o.ipynb",
        )


def test_local_kernel_run(tmp_path) -> None:
    result = launch_worker(NOTEBOOK, {"model": "local-model"}, output_path=tmp_path / "o.ipynb")
    assert result.worker_url == "http://127.0.0.1:8765"
    assert result.runtime_info["model"] == "local-model"
    assert result.runtime_info["cwd"] == os.getcwd()


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"modle": "x"}, "unknown parameter 'modle'"),
        ({"worker_port": "80"}, "must be int, not str"),
        ({"worker_port": True}, "must be int, not bool"),
        ({"fail": 1}, "must be bool, not int"),
        ({"extra": {"k": object()}}, "JSON-like"),
        ({"extra": {1: "x"}}, "JSON-like"),
        ({"model": float("nan")}, "JSON-like"),
        ({"class": 1}, "not a Python identifier"),
        ({"a b": 1}, "not a Python identifier"),
    ],
)
def test_bad_parameters_are_rejected_before_launch(parameters, message, tmp_path) -> None:
    with pytest.raises(ValidationError, match=message):
        launch_worker(NOTEBOOK, parameters, output_path=tmp_path / "o.ipynb")
    assert not (tmp_path / "o.ipynb").exists()


def test_bad_notebook_or_runtime_is_rejected(tmp_path) -> None:
    plain = new_notebook(cells=[new_code_cell("x = 1")])
    nbformat.write(plain, tmp_path / "plain.ipynb")
    with pytest.raises(ValidationError, match="no cell tagged 'parameters'"):
        launch_worker(tmp_path / "plain.ipynb", {})
    with pytest.raises(ValidationError, match="not a notebook"):
        launch_worker(tmp_path / "missing.ipynb", {})
    with pytest.raises(ValidationError, match="http"):
        launch_worker(NOTEBOOK, {}, runtime=RemoteRuntime("ftp://host"))
    with pytest.raises(ValidationError, match="one-line"):
        launch_worker(NOTEBOOK, {}, runtime=RemoteRuntime("http://h", headers={"X": "a\r\nb"}))


def test_colab_runtime_carries_the_proxy_token_twice() -> None:
    runtime = RemoteRuntime.colab("https://proxy.example/Tun/abc", "tok")
    assert runtime.headers == {"X-Colab-Runtime-Proxy-Token": "tok",
                               "X-Colab-Client-Agent": "compute-bridge"}
    assert runtime.ws_query == {"colab-runtime-proxy-token": "tok"}
    with launch._gateway(runtime):
        gateway = GatewayClient.instance()
        assert gateway.ws_url == "wss://proxy.example/Tun/abc"  # case kept, scheme swapped
        headers = gateway.load_connection_args()["headers"]
        assert headers["X-Colab-Runtime-Proxy-Token"] == "tok"
        assert headers["X-Colab-Client-Agent"] == "compute-bridge"
    assert not GatewayClient.initialized()


def record_notebook(*outputs: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cell = new_code_cell("pass")
    cell.outputs = list(outputs)
    return new_notebook(cells=[cell])


def test_parse_worker_record_contract() -> None:
    line = format_worker_record("https://w.example", {"gpu": "T4"})
    older = format_worker_record("https://old.example", {})
    nb = record_notebook(new_output("stream", name="stdout", text=f"{older}\nnoise {{\n{line}\n"))
    assert parse_worker_record(nb) == ("https://w.example", {"gpu": "T4"})
    shown = new_output(
        "display_data",
        data={
            "application/json": {
                "bridge_worker": {"worker_url": "http://x:1", "runtime_info": {"gpu": None}}
            }
        },
    )
    assert parse_worker_record(record_notebook(shown)) == ("http://x:1", {"gpu": None})
    with pytest.raises(BackendUnavailable, match="without a 'bridge_worker' record"):
        parse_worker_record(record_notebook(new_output("stream", name="stderr", text=line)))
    bad = format_worker_record("file:///etc", {})
    with pytest.raises(BackendUnavailable, match="bad worker_url"):
        parse_worker_record(record_notebook(new_output("stream", name="stdout", text=bad)))


def test_kernel_websocket_carries_colab_proxy_header_and_query() -> None:
    """The channels handshake as a Colab runtime proxy would see it."""
    seen: list[tuple[str, dict[str, str]]] = []

    def record(connection: object, request: Request) -> None:
        seen.append((request.path, dict(request.headers.raw_items())))

    def handler(ws: ServerConnection) -> None:
        for _ in ws:
            pass

    with serve(handler, "127.0.0.1", 0, process_request=record) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        runtime = RemoteRuntime.colab(f"http://127.0.0.1:{port}/Proxy/Rt", "tok-1")
        with launch._gateway(runtime):
            client = launch._RuntimeKernelClient(kernel_id="k1")
            run_sync(client.start_channels)()
            client.stop_channels()
        server.shutdown()
        thread.join(5)
    ((path, headers),) = seen
    assert path == "/Proxy/Rt/api/kernels/k1/channels?colab-runtime-proxy-token=tok-1"
    assert headers["X-Colab-Runtime-Proxy-Token"] == "tok-1"
    assert "Authorization" not in headers

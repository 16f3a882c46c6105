"""Run the worker notebook with papermill on a local kernel or a remote Jupyter runtime."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import nbformat
import papermill
import websocket
from jupyter_core.utils import ensure_async
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.gateway.managers import GatewayKernelClient, GatewayKernelManager
from jupyter_server.utils import url_escape, url_path_join
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.exceptions import PapermillExecutionError
from tornado import web
from traitlets import Dict as DictTrait
from traitlets import DottedObjectName, Type

from bridge.errors import BackendUnavailable, Unauthorized
from colab_runtime.notebook_params import validate_parameters, validate_runtime
from colab_runtime.proxy import (
    PROXY_TOKEN_HEADER,
    PROXY_TOKEN_QUERY,
    is_refusal,
    proxy_headers,
    refusal,
)

log = logging.getLogger(__name__)

# The worker record contract: the worker notebook prints on stdout one JSON line
#   {"bridge_worker": {"worker_url": "https://...", "runtime_info": {"gpu": ..., ...}}}
# (format_worker_record writes it; an application/json display output counts too);
# parse_worker_record reads the last one back from the executed notebook.
RECORD_KEY = "bridge_worker"
WORKER_URL_KEY = "worker_url"
RUNTIME_INFO_KEY = "runtime_info"
COLAB_PROXY_HEADER, COLAB_PROXY_QUERY = PROXY_TOKEN_HEADER, PROXY_TOKEN_QUERY
KERNEL_START_TRIES = 3  # Google's CLI retries a kernel start three times on a booting VM
BOOTING = (502, 503, 504)  # what a fresh VM's proxy answers for a while
_TIMED_OUT = "LaunchTimeout"  # the error nbclient records for a cell past execution_timeout
_GATEWAY_LOCK = threading.Lock()  # GatewayClient is a process-wide singleton


def format_worker_record(worker_url: str, runtime_info: Mapping[str, Any]) -> str:
    """The one stdout line a worker notebook prints to report where its worker listens."""
    return json.dumps({RECORD_KEY: {WORKER_URL_KEY: worker_url,
                                    RUNTIME_INFO_KEY: dict(runtime_info)}})


def parse_worker_record(nb: nbformat.NotebookNode) -> tuple[str, dict[str, Any]]:
    """The last worker record (worker_url, runtime_info) in an executed notebook's outputs."""
    found: dict[str, Any] | None = None
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            for candidate in _record_candidates(output):
                if isinstance(candidate, dict) and isinstance(candidate.get(RECORD_KEY), dict):
                    found = candidate[RECORD_KEY]
    if found is None:
        raise BackendUnavailable(f"the worker notebook finished without a {RECORD_KEY!r} record")
    url, info = found.get(WORKER_URL_KEY), found.get(RUNTIME_INFO_KEY, {})
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise BackendUnavailable(f"the worker notebook recorded a bad worker_url: {url!r}")
    if not isinstance(info, dict):
        raise BackendUnavailable("the worker notebook recorded runtime_info that is not an object")
    return url, info


@dataclass(frozen=True)
class RemoteRuntime:
    """A Jupyter server to run on: its URL, a token and/or extra headers and websocket query."""

    url: str
    token: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ws_query: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def colab(cls, proxy_url: str, proxy_token: str) -> RemoteRuntime:
        """A Colab runtime behind its proxy: the proxy token and X-Colab-Client-Agent on every
        request, REST and websocket (the VS Code extension calls both required), and the token
        again in the websocket's query (Google's CLI)."""
        return cls(proxy_url, headers=proxy_headers(proxy_token),
                   ws_query={PROXY_TOKEN_QUERY: proxy_token})


@dataclass(frozen=True)
class LaunchResult:
    """Where the launched worker listens, what it runs on, and the executed notebook."""

    worker_url: str
    runtime_info: dict[str, Any]
    output_notebook_path: Path


def launch_worker(
    notebook_path: str | Path,
    parameters: Mapping[str, Any],
    *,
    runtime: RemoteRuntime | None = None,
    output_path: str | Path | None = None,
    kernel_name: str | None = None,
    execution_timeout: float | None = None,
    start_timeout: float = 60.0,
    retry_backoff: float = 2.0,
) -> LaunchResult:
    """Execute the worker notebook (local kernel, or ``runtime``) and read its record back;
    a cell past ``execution_timeout`` is interrupted and the launch fails. A runtime still
    booting (502/503/504 on the kernel start) is tried again with back-off, three times in all.
    Behind Colab's runtime proxy a 401 or an empty 404 is ProxyTokenRefused (renew the token)."""
    source = Path(notebook_path)
    validate_parameters(source, parameters)
    if runtime is not None:
        validate_runtime(runtime)
    out = Path(output_path) if output_path else (
        Path(tempfile.mkdtemp(prefix="bridge-launch-")) / f"{source.stem}.out.ipynb"
    )
    options: dict[str, Any] = {
        "kernel_name": kernel_name, "progress_bar": False, "log_output": False,
        "start_timeout": start_timeout, "execution_timeout": execution_timeout,
    }
    if execution_timeout is not None:  # interrupt a hung cell, so its code can clean up
        options["interrupt_on_timeout"] = True
        options["error_on_timeout"] = {"ename": _TIMED_OUT, "evalue": "", "traceback": []}
    if runtime is not None:
        options["kernel_manager_class"] = _RuntimeKernelManager
    try:
        nb = _execute(source, out, parameters, runtime, options, retry_backoff)
    except PapermillExecutionError as exc:
        if execution_timeout is not None and exc.ename in (_TIMED_OUT, "KeyboardInterrupt"):
            raise BackendUnavailable(
                f"the worker notebook did not finish: a step ran past {execution_timeout:g} s",
                details={"reason": "launch_timeout", "cell_index": exc.cell_index},
            ) from exc
        raise BackendUnavailable(
            f"the worker notebook failed: {exc.ename}: {exc.evalue}",
            details={"ename": exc.ename, "evalue": exc.evalue, "cell_index": exc.cell_index,
                     "output_notebook_path": str(out)},
        ) from exc
    except web.HTTPError as exc:
        message = exc.log_message % exc.args if exc.log_message else str(exc)
        raise _runtime_error(runtime, exc.status_code, message, _body(exc)) from exc
    except websocket.WebSocketBadStatusException as exc:
        raise _runtime_error(runtime, exc.status_code, "the kernel websocket was refused",
                             exc.resp_body) from exc
    except (CellTimeoutError, DeadKernelError, TimeoutError, OSError) as exc:
        raise BackendUnavailable(f"the worker notebook did not finish: {exc}") from exc
    worker_url, runtime_info = parse_worker_record(nb)
    return LaunchResult(worker_url, runtime_info, out)


def _execute(source: Path, out: Path, parameters: Mapping[str, Any],
             runtime: RemoteRuntime | None, options: dict[str, Any], backoff: float) -> Any:
    for attempt in range(1, KERNEL_START_TRIES + 1):
        try:
            with _gateway(runtime) if runtime is not None else nullcontext():
                return papermill.execute_notebook(str(source), str(out), dict(parameters),
                                                  **options)
        except (web.HTTPError, websocket.WebSocketBadStatusException) as exc:
            if exc.status_code not in BOOTING or attempt == KERNEL_START_TRIES:
                raise
            log.info("the runtime answered %s starting a kernel (booting?); try %d of %d",
                     exc.status_code, attempt + 1, KERNEL_START_TRIES)
            time.sleep(backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


class _RuntimeGateway(GatewayClient):
    """GatewayClient plus the query parameters the kernel websocket needs (Colab's proxy)."""

    ws_query = DictTrait()

    def load_connection_args(self, **kwargs: Any) -> dict[str, Any]:
        """Upstream's args, minus the empty ``Authorization: token `` it adds with no token."""
        # jupyter_server leaves it unannotated (untyped_calls_exclude does not reach super())
        args: dict[str, Any] = super().load_connection_args(**kwargs)  # type: ignore[no-untyped-call]
        if not self.auth_token:
            headers, given = args.setdefault("headers", {}), json.loads(self.headers or "{}")
            if self.auth_header_key in given:
                headers[self.auth_header_key] = given[self.auth_header_key]
            else:
                headers.pop(self.auth_header_key, None)
        return args


class _RuntimeKernelClient(GatewayKernelClient):
    """GatewayKernelClient whose channels websocket carries the same auth as its REST calls."""

    # jupyter_client types start_channels as sync; jupyter_server's override (our base) is async
    async def start_channels(  # type: ignore[override]
        self, shell: bool = True, iopub: bool = True, stdin: bool = True, hb: bool = True,
        control: bool = True,
    ) -> None:
        """Open the channels websocket with the gateway's headers, then the channel queues."""
        # Upstream (jupyter_server 2.21) opens this websocket with no headers, so a
        # token-protected server answers 403; the REST calls' headers fix that.
        gateway = GatewayClient.instance()
        ws_url = url_path_join(gateway.ws_url or "", gateway.kernels_endpoint,
                               url_escape(self.kernel_id), "channels")
        query = getattr(gateway, "ws_query", {})
        if query:
            ws_url += "?" + urlencode(query)
        headers = gateway.load_connection_args()["headers"]
        self.channel_socket = websocket.create_connection(
            ws_url,
            header=headers,
            timeout=GatewayClient.KERNEL_LAUNCH_TIMEOUT,
            enable_multithread=True,
            sslopt={"ca_certs": gateway.ca_certs, "certfile": gateway.client_cert,
                    "keyfile": gateway.client_key},
        )
        # Skip GatewayKernelClient.start_channels (it would open a second, headerless socket).
        await ensure_async(super(GatewayKernelClient, self).start_channels(
            shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control))
        self.response_router = threading.Thread(target=self._route_responses, daemon=True)
        self.response_router.start()

    def stop_channels(self) -> None:
        """Stop the channels; a no-op when the websocket never opened."""
        # Upstream asserts the socket exists, masking the handshake error behind an
        # AssertionError during nbclient's cleanup.
        if self.channel_socket is None:
            self._channels_stopped = True
            return
        super().stop_channels()  # type: ignore[no-untyped-call]  # jupyter_server: unannotated


class _RuntimeKernelManager(GatewayKernelManager):
    """GatewayKernelManager that hands out _RuntimeKernelClient."""

    client_class = DottedObjectName(f"{__name__}._RuntimeKernelClient")
    client_factory = Type(klass=f"{__name__}._RuntimeKernelClient")


@contextmanager
def _gateway(runtime: RemoteRuntime) -> Iterator[None]:
    """Point the GatewayClient singleton at ``runtime`` for one run, then restore it."""
    with _GATEWAY_LOCK:
        previous = GatewayClient.instance() if GatewayClient.initialized() else None
        GatewayClient.clear_instance()
        saved_timeout = GatewayClient.KERNEL_LAUNCH_TIMEOUT
        saved_env = os.environ.get("KERNEL_LAUNCH_TIMEOUT")  # init_connection_args sets it
        scheme, rest = runtime.url.split("://", 1)
        _RuntimeGateway.instance(
            url=runtime.url,
            # Upstream's default ws_url lower-cases the whole URL; keep the path intact.
            ws_url=("wss" if scheme == "https" else "ws") + "://" + rest,
            auth_token=runtime.token or "",
            headers=json.dumps(dict(runtime.headers)),
            ws_query=dict(runtime.ws_query),
        )
        try:
            yield
        finally:
            _RuntimeGateway.clear_instance()
            GatewayClient.KERNEL_LAUNCH_TIMEOUT = saved_timeout
            if saved_env is None:
                os.environ.pop("KERNEL_LAUNCH_TIMEOUT", None)
            else:
                os.environ["KERNEL_LAUNCH_TIMEOUT"] = saved_env
            if previous is not None:
                # traitlets declares SingletonConfigurable._instance as None (untyped class attr)
                GatewayClient._instance = previous  # type: ignore[assignment]


def _body(exc: web.HTTPError) -> bytes | None:
    """The body of the runtime's answer behind a gateway HTTPError (None: no answer read)."""
    response = getattr(exc.__cause__, "response", None)
    return getattr(response, "body", None) if response is not None else None


def _runtime_error(runtime: RemoteRuntime | None, status: int | None, message: str,
                   body: bytes | str | None) -> Unauthorized | BackendUnavailable:
    colab = runtime is not None and PROXY_TOKEN_HEADER in runtime.headers
    if colab and body is not None and is_refusal(status, body):
        return refusal(status, "the kernel start")
    if status in (401, 403):
        return Unauthorized(f"the Jupyter runtime refused the token ({status}): {message}")
    return BackendUnavailable(f"the Jupyter runtime failed ({status}): {message}")


def _record_candidates(output: Mapping[str, Any]) -> Iterator[Any]:
    if output.get("output_type") == "stream" and output.get("name") == "stdout":
        for line in str(output.get("text", "")).splitlines():
            if line.lstrip().startswith("{") and RECORD_KEY in line:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue
    elif output.get("output_type") in ("display_data", "execute_result"):
        yield output.get("data", {}).get("application/json")



"""The GPU worker: a small Flask app around one Backend, spoken to by ``bridge.RemoteBackend``.

Routes: ``GET /health`` (unsigned), ``GET /info``, ``POST /generate`` (NDJSON events),
``POST /models/load``; every route but /health must carry a valid HMAC signature.
Run it with ``python -m colab_runtime.worker --port 8765 --secret-file PATH [--model ID]``;
the secret comes from a file or ``BRIDGE_WORKER_SECRET``, never from argv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from bridge.errors import BackendUnavailable, BridgeError, NotSupported, ValidationError
from bridge.router import close_stream, models_of
from bridge.signing import Verifier, path_from_environ
from bridge.types import Backend, Done, Event, GenerateRequest, Token
from bridge.wire import CONTENT_TYPE, WORKER_SERVICE, encode_error, encode_event, request_from_dict
from colab_runtime.tunnel import TUNNEL_KINDS, open_tunnel

log = logging.getLogger(__name__)
SECRET_ENV, NGROK_TOKEN_ENV = "BRIDGE_WORKER_SECRET", "NGROK_AUTHTOKEN"


class EchoBackend:
    """Answers with the words of the prompt, optionally slowly: the worker's test backend."""

    name = "echo"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def ready(self) -> bool:
        return True

    def generate(self, request: GenerateRequest) -> Iterator[Event]:
        text = request.prompt or (request.messages[-1].content if request.messages else "")
        answer = text.strip()
        if request.prefill and answer.startswith(request.prefill):
            answer = answer[len(request.prefill) :]
        words = re.findall(r"\s*\S+", answer)[: request.max_tokens]
        for index, word in enumerate(words):
            if index and self.delay:
                time.sleep(self.delay)
            yield Token(word)
        finish = "length" if len(words) == request.max_tokens else "stop"
        yield Done(len(text.split()), len(words), finish, backend=self.name)


def detect_runtime_info() -> dict[str, Any]:
    """What this runtime offers: type (colab/kaggle/jupyter), GPU name and memory, host memory."""
    import psutil

    kind = "colab" if "COLAB_RELEASE_TAG" in os.environ else "jupyter"
    kind = "kaggle" if "KAGGLE_KERNEL_RUN_TYPE" in os.environ else kind
    gpu, gpu_mb = None, None
    with contextlib.suppress(ImportError):
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            gpu, gpu_mb = str(props.name), int(props.total_memory) >> 20
    host = psutil.virtual_memory()
    memory = {"gpu_total_mb": gpu_mb, "host_total_mb": host.total >> 20}
    memory["host_available_mb"] = host.available >> 20
    return {"type": kind, "device": "cuda" if gpu else "cpu", "gpu": gpu, "memory": memory}


def create_worker_app(
    backend: Backend, secret: str, *, runtime_info: dict[str, Any] | None = None
) -> Flask:
    """The worker app: one backend, HMAC-verified routes, errors in the API's envelope."""
    if not secret:
        raise ValidationError("the worker needs a secret")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    verifier = Verifier(secret)
    cached: dict[str, Any] = {} if runtime_info is None else {"info": dict(runtime_info)}

    @app.errorhandler(BridgeError)
    def bridge_error(error: BridgeError) -> tuple[Response, int, dict[str, str]]:
        return jsonify(error.to_dict()), error.status, error.headers

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        cls = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}
        body = {"error": {"code": cls.get(status, "VALIDATION_ERROR"), "message": error.name}}
        return jsonify(body), status

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> tuple[Response, int]:
        log.exception("worker error")
        return jsonify(BridgeError().to_dict()), 500

    @app.before_request
    def verify_signature() -> None:
        if request.path != "/health":
            body = request.get_data(cache=True)
            verifier.verify(
                request.method, path_from_environ(request.environ), request.headers, body
            )

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok", service=WORKER_SERVICE)

    @app.get("/info")
    def info() -> Response:
        if "info" not in cached:
            cached["info"] = detect_runtime_info()
        models = models_of(backend)
        return jsonify(
            status="ok", backend=backend.name, models=models, runtime_info=cached["info"]
        )

    @app.post("/generate")
    def generate() -> Response:
        gen_request = request_from_dict(request.get_json(force=True, silent=True))
        events = backend.generate(gen_request)
        try:  # an error before the first event gets a real HTTP status
            first = next(events)
        except StopIteration:
            raise BackendUnavailable("the backend produced no answer") from None
        except BaseException:
            close_stream(events)
            raise

        def stream() -> Iterator[bytes]:
            try:
                yield encode_event(first)
                for event in events:
                    yield encode_event(event)
            except BridgeError as exc:  # after the first byte, an error is one more line
                yield encode_error(exc)
            except Exception:
                log.exception("worker stream failed")
                yield encode_error(BridgeError())
            finally:
                close_stream(events)

        return Response(stream(), mimetype=CONTENT_TYPE)

    @app.post("/models/load")
    def load_model() -> Response:
        body = request.get_json(force=True, silent=True)
        model_id = body.get("model_id") if isinstance(body, dict) else None
        if not isinstance(model_id, str) or not model_id:
            raise ValidationError("model_id is required", details={"field": "model_id"})
        quantization = body.get("quantization") or "none"  # type: ignore[union-attr]
        load = getattr(backend, "load", None)
        if not callable(load):
            raise NotSupported(f"backend {backend.name!r} cannot load models")
        seconds = load(model_id, quantization=quantization)
        load_time = round(float(seconds), 3) if isinstance(seconds, int | float) else None
        return jsonify(status="loaded", model_id=model_id, load_time=load_time)

    return app


class WorkerServer:
    """A threaded werkzeug server for the worker app (port 0 picks a free port)."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self.host, self.port = host, self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> WorkerServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._server.serve_forever(poll_interval)

    def stop(self) -> None:
        """Stop accepting requests and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()


def serve_worker(
    backend: Backend, secret: str, *, host: str = "127.0.0.1", port: int = 8765, **kw: Any
) -> None:
    """Run the worker app in the foreground until interrupted."""
    WorkerServer(create_worker_app(backend, secret, **kw), host, port).serve_forever()


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
    env = {**os.environ, SECRET_ENV: secret}
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
    worker.stop()
    raise BackendUnavailable(f"the worker did not start in {timeout:.0f}s:\n{_log_tail(log_path)}")


def build_local_backend(model: str | None, quantization: str | None) -> Backend:
    """The real worker backend: LocalBackend over the model store, with ``model`` loaded."""
    from bridge.config import Settings
    from bridge.local_backend import LocalBackend
    from bridge.model_store import ModelStore

    settings = Settings.from_env()
    backend = LocalBackend(ModelStore(settings.models_dir), keep_alive=None)
    if model:
        backend.load(model, quantization=quantization or "none")
    return backend


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m colab_runtime.worker``."""
    parser = argparse.ArgumentParser(prog="python -m colab_runtime.worker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--secret-file", help=f"file holding the secret (else ${SECRET_ENV})")
    parser.add_argument("--model")
    parser.add_argument("--quantization")
    parser.add_argument("--backend", choices=("local", "echo"), default="local")
    parser.add_argument("--echo-delay", type=float, default=0.0)
    parser.add_argument("--tunnel", choices=TUNNEL_KINDS, default="none")
    parser.add_argument("--ready-file", help="where to write {url, public_url} once serving")
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_ENV, "")
    secret = Path(args.secret_file).read_text().strip() if args.secret_file else secret
    if not secret:
        parser.error(f"no secret: pass --secret-file or set {SECRET_ENV}")
    logging.basicConfig(level=logging.INFO)
    if args.backend == "echo":
        backend: Backend = EchoBackend(args.echo_delay)
    else:
        backend = build_local_backend(args.model, args.quantization)
    server = WorkerServer(create_worker_app(backend, secret), args.host, args.port)
    tunnel = open_tunnel(args.tunnel, server.port, ngrok_token=os.environ.get(NGROK_TOKEN_ENV))
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        tmp.write_text(json.dumps({"url": server.url, "public_url": tunnel.public_url}))
        tmp.replace(args.ready_file)
    print(f"worker serving on {server.url} (public {tunnel.public_url})", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so the tunnel is closed
    try:
        server.serve_forever()
    finally:
        tunnel.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

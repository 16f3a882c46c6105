"""The GPU worker: a small Flask app around one Backend, spoken to by ``bridge.RemoteBackend``.

Routes: ``GET /health`` (unsigned), ``GET /info``, ``POST /generate`` (NDJSON events),
``POST /models/load``, ``POST /shutdown``; every route but /health must carry a valid HMAC
signature.
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
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer

from bridge.config import WORKER_SECRET_ENV, WorkerSettings
from bridge.embeddings import EmbedRequest
from bridge.errors import BridgeError, NotSupported, ValidationError
from bridge.router import close_stream, models_of
from bridge.serving import create_server
from bridge.signing import Verifier, path_from_environ
from bridge.streaming import Primed, encode_stream
from bridge.types import Backend, Done, Event, GenerateRequest, Token
from bridge.wire import CONTENT_TYPE, WORKER_SERVICE, encode_error, encode_event, request_from_dict
from colab_runtime.detached import DetachedWorker, start_detached  # re-exported
from colab_runtime.tunnel import TUNNEL_KINDS, open_tunnel

__all__ = ["DetachedWorker", "EchoBackend", "WorkerServer", "create_worker_app", "start_detached"]
log = logging.getLogger(__name__)


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

    kind = WorkerSettings.from_env().runtime_type
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
    backend: Backend,
    secret: str,
    *,
    runtime_info: dict[str, Any] | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> Flask:
    """The worker app: one backend, HMAC-verified routes, errors in the API's envelope.

    ``on_shutdown`` is what a signed ``POST /shutdown`` runs (the process stops itself);
    without it the route answers 501.
    """
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
        events = Primed(backend.generate(gen_request))  # errors before any byte: a status
        lines = encode_stream(events, lambda event: (encode_event(event),), encode_error)
        return Response(lines, mimetype=CONTENT_TYPE)

    @app.post("/embed")
    def embed() -> Response:
        embed_ = getattr(backend, "embed", None)
        if not callable(embed_):
            raise NotSupported(f"backend {backend.name!r} does not embed")
        result = embed_(EmbedRequest.from_dict(request.get_json(force=True, silent=True)))
        return jsonify(result.as_dict())

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

    @app.post("/shutdown")
    def shutdown() -> Response:
        if on_shutdown is None:
            raise NotSupported("this worker cannot be stopped over HTTP")
        on_shutdown()
        return jsonify(status="stopping")

    return app


class WorkerServer:
    """A threaded werkzeug server for the worker app (port 0 picks a free port)."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server: BaseWSGIServer = create_server(host, port, app)
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


def build_local_backend(model: str | None, quantization: str | None) -> Backend:
    """The real worker backend: LocalBackend over the model store, with ``model`` loaded."""
    from bridge.backends.local import LocalBackend
    from bridge.config import Settings
    from bridge.models.store import ModelStore

    settings = Settings.from_env()
    backend = LocalBackend(ModelStore(settings.models_dir), keep_alive=None,
                           engine=settings.engine)
    if model:
        backend.load(model, quantization=quantization or "none")
    return backend


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m colab_runtime.worker``."""
    parser = argparse.ArgumentParser(prog="python -m colab_runtime.worker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--secret-file", help=f"secret file (else ${WORKER_SECRET_ENV})")
    parser.add_argument("--model")
    parser.add_argument("--quantization")
    parser.add_argument("--backend", choices=("local", "echo"), default="local")
    parser.add_argument("--echo-delay", type=float, default=0.0)
    parser.add_argument("--tunnel", choices=TUNNEL_KINDS, default="none")
    parser.add_argument("--ready-file", help="where to write {url, public_url} once serving")
    args = parser.parse_args(argv)
    env = WorkerSettings.from_env()
    secret = Path(args.secret_file).read_text().strip() if args.secret_file else env.secret
    if not secret:
        parser.error(f"no secret: pass --secret-file or set {WORKER_SECRET_ENV}")
    logging.basicConfig(level=logging.INFO)
    if args.backend == "echo":
        backend: Backend = EchoBackend(args.echo_delay)
    else:
        backend = build_local_backend(args.model, args.quantization)
    app = create_worker_app(backend, secret, on_shutdown=_stop_soon)
    server = WorkerServer(app, args.host, args.port)
    tunnel = open_tunnel(args.tunnel, server.port, ngrok_token=env.ngrok_token or None)
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        ready = {"url": server.url, "public_url": tunnel.public_url, "pid": os.getpid()}
        tmp.write_text(json.dumps(ready))
        tmp.replace(args.ready_file)
    print(f"worker serving on {server.url} (public {tunnel.public_url})", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so the tunnel is closed
    try:
        server.serve_forever()
    finally:
        tunnel.close()
        close_stream(backend)  # stops the model's batching threads, so the process can exit
    return 0


def _stop_soon() -> None:
    """SIGTERM this process once the /shutdown answer is out."""
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()


if __name__ == "__main__":
    raise SystemExit(main())

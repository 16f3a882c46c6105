"""HTTP servers: werkzeug's threaded one with keep-alive (the worker, tests, ``--reload``) and
gunicorn's threaded workers (``bridge serve`` in production)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class KeepAliveHandler(WSGIRequestHandler):
    """HTTP/1.1, so a client reuses its connection (werkzeug's default, 1.0, closes each one).

    Measured on loopback: a new TCP connection per request costs ~0.5 ms on each hop.
    Streams without a length go out chunked.
    """

    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """werkzeug's access line, with credentials in the query (``/ws?token=``) masked."""
        self.requestline = redact_query(self.requestline)
        super().log_request(code, size)


_SECRET_PARAMS = re.compile(r"([?&](?:token|access_token|api_key|key)=)[^&\s]+", re.I)


def redact_query(text: str) -> str:
    """``text`` with the values of credential-bearing query parameters replaced by ``***``."""
    return _SECRET_PARAMS.sub(r"\1***", text)


def create_server(
    host: str, port: int, app: Any, *, ssl_context: Any = None
) -> BaseWSGIServer:
    """A threaded server for ``app`` (port 0 picks a free one); call ``serve_forever``."""
    return make_server(
        host, port, app, threaded=True, request_handler=KeepAliveHandler, ssl_context=ssl_context
    )


def run_gunicorn(
    factory: Callable[[], Any],
    *,
    host: str,
    port: int,
    workers: int = 1,
    threads: int = 32,
    graceful_timeout: int = 30,
    header_timeout: float = 10.0,
    certfile: str = "",
    keyfile: str = "",
    on_ready: Callable[[int], None] = lambda _port: None,
    on_worker_exit: Callable[[Any], None] = lambda _app: None,
) -> None:
    """Serve ``factory()`` on gunicorn with threaded workers until stopped.

    The worker class is gunicorn's ``gthread`` with request heads read in its event loop
    (bridge.http_worker): a client gets ``header_timeout`` seconds to send a head and holds
    no thread meanwhile, so slow or half-open connections cannot take the threads.

    Each worker process builds its own app after the fork (threads, pools and models are not
    fork-safe). SIGTERM is graceful: workers stop accepting, running requests and streams get
    ``graceful_timeout`` seconds to finish, then ``on_worker_exit(app)`` runs in each worker.
    SIGINT (Ctrl-C) stops at once. HTTP/1.1 keep-alive is gunicorn's own. ``on_ready(port)``
    runs once, when the first worker can answer.
    """
    import multiprocessing

    from gunicorn.app.base import BaseApplication

    from bridge.http_worker import HeadBufferingWorker

    worker_class = type("BridgeWorker", (HeadBufferingWorker,), {"header_timeout": header_timeout})

    built: list[Any] = []
    announced = multiprocessing.get_context("fork").Value("b", 0)  # shared by the workers

    def worker_ready(worker: Any) -> None:
        """The first worker with its app built says so (the port is bound before any is)."""
        with announced.get_lock():
            if not announced.value:
                announced.value = 1
                on_ready(int(worker.sockets[0].getsockname()[1]))

    def load() -> Any:
        built.append(factory())
        return built[-1]

    options: dict[str, Any] = {
        "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
        "workers": workers,
        "worker_class": worker_class,
        "threads": threads,
        "graceful_timeout": graceful_timeout,
        "keepalive": 5,  # seconds an idle client connection is kept (HTTP/1.1)
        "timeout": 60,  # a worker silent this long is restarted (its loop, not a request)
        "certfile": certfile or None,
        "keyfile": keyfile or None,
        "control_socket_disable": True,  # gunicorn >= 25 opens one per user by default
        "post_worker_init": worker_ready,
        "worker_exit": lambda _server, _worker: _exit_all(built, on_worker_exit),
        "accesslog": None,  # the app writes its own access log, with credentials masked
    }

    class _Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                if name in self.cfg.settings and value is not None:
                    self.cfg.set(name, value)

        def load(self) -> Any:
            return load()

    _Application().run()


def _exit_all(apps: list[Any], on_worker_exit: Callable[[Any], None]) -> None:
    for app in apps:
        on_worker_exit(app)

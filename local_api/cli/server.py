"""Commands that run here, without the API: `serve`, `worker` and `user create`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from bridge.config import WORKER_SECRET_ENV, Settings, WorkerSettings
from bridge.errors import Conflict
from bridge.serving import create_server, run_gunicorn
from bridge.urls import is_loopback

log = logging.getLogger("compute_bridge.cli")


def _stop(*_: object) -> None:
    raise KeyboardInterrupt


def check_port_free(host: str, port: int) -> None:
    """Refuse a busy port in one line with the fix (gunicorn would print ten lines of retries).

    Raises Conflict when another process listens on ``host:port``.
    """
    import errno
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return  # the server's own bind reports anything else
            raise Conflict(
                f"port {port} on {host} is already in use (another `bridge serve`?): stop it, "
                f"or start on another port: `make run PORT={port + 1}` or "
                f"`bridge serve --port {port + 1}`"
            ) from None


def announce(scheme: str, host: str, port: int, home: object) -> None:
    """What a newcomer reads on start-up: where it listens, where its data is, what to do next."""
    url = f"{scheme}://{host}:{port}"
    print(f"Compute Bridge listening on {url}", flush=True)
    print(f"Data directory: {home}", flush=True)
    print(f"Next: open {url}/ for the docs, status and API reference; in another terminal:\n"
          f"  bridge user create NAME --email YOU@EXAMPLE.ORG   (the first account is the admin)"
          f"\n  bridge login --username NAME --url {url}\n  bridge chat \"Hello!\"", flush=True)


def serve(args: argparse.Namespace) -> int:
    from local_api import create_app, shutdown

    settings = Settings.from_env(
        host=args.host, port=args.port, home=args.home, tls_cert=args.tls_cert,
        tls_key=args.tls_key, server=args.server, workers=args.workers, threads=args.threads,
    )
    ssl_context = None
    scheme = "http"
    if settings.tls_cert or settings.tls_key:
        if not (settings.tls_cert and settings.tls_key):
            from local_api.cli.parser import UsageError

            raise UsageError("TLS needs both --tls-cert and --tls-key")
        ssl_context = (settings.tls_cert, settings.tls_key)
        scheme = "https"
    elif not is_loopback(settings.host):
        log.warning(
            "WARNING: serving on %s without TLS: tokens and prompts cross the network in clear "
            "text. Use --tls-cert/--tls-key or bind 127.0.0.1.",
            settings.host,
        )
    check_port_free(settings.host, settings.port)
    if settings.server not in ("gunicorn", "werkzeug"):
        from local_api.cli.parser import UsageError

        raise UsageError(f"BRIDGE_SERVER must be gunicorn or werkzeug, not {settings.server!r}")
    if settings.server == "gunicorn" and sys.platform != "win32":
        return _serve_gunicorn(settings, scheme)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)  # `kill` stops it as cleanly as Ctrl-C
    app = create_app(settings)
    try:
        server = create_server(settings.host, settings.port, app, ssl_context=ssl_context)
        announce(scheme, settings.host, server.port, settings.home)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        shutdown(app)
    return 0


def _serve_gunicorn(settings: Settings, scheme: str) -> int:
    """gunicorn, threaded workers; each worker builds its app, shut down as it exits."""
    from local_api import create_app, shutdown
    from local_api.cli.parser import UsageError

    if settings.workers < 1 or settings.threads < 1:
        raise UsageError("--workers and --threads must be at least 1")
    if settings.workers > 1 and not settings.redis_url:
        log.warning("WARNING: %d workers without BRIDGE_REDIS_URL count rate limits, cache "
                    "answers and signing nonces in each worker alone", settings.workers)

    def ready(port: int) -> None:
        announce(scheme, settings.host, port, settings.home)

    run_gunicorn(
        lambda: create_app(settings), host=settings.host, port=settings.port,
        workers=settings.workers, threads=settings.threads,
        graceful_timeout=settings.graceful_timeout, header_timeout=settings.header_timeout,
        certfile=settings.tls_cert,
        keyfile=settings.tls_key, on_ready=ready, on_worker_exit=shutdown,
    )
    return 0


def worker(args: argparse.Namespace) -> int:
    """Run a GPU worker here (colab_runtime.worker); `bridge connect --worker-url` attaches it."""
    from colab_runtime import worker as worker_module
    from local_api.cli.parser import UsageError

    if not args.secret_file and not WorkerSettings.from_env().secret:
        raise UsageError(
            f"the worker needs a secret: pass --secret-file PATH or set {WORKER_SECRET_ENV} "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > worker.secret)"
        )
    if args.secret_file and not os.path.isfile(args.secret_file):
        raise UsageError(f"--secret-file {args.secret_file}: no such file")
    argv = ["--host", args.host, "--port", str(args.port), "--backend", args.backend,
            "--tunnel", args.tunnel]
    for flag, value in (("--secret-file", args.secret_file), ("--model", args.model),
                        ("--quantization", args.quantization), ("--ready-file", args.ready_file)):
        if value:
            argv += [flag, value]
    try:
        return worker_module.main(argv)
    except KeyboardInterrupt:
        return 0


def user_create(args: argparse.Namespace) -> int:
    """Create an account straight in the database at BRIDGE_HOME (no server needed)."""
    from flask import Flask
    from sqlalchemy import make_url

    from local_api.accounts import users
    from local_api.cli.credentials import read_password
    from local_api.storage import db

    password = read_password(args, confirm=True)
    settings = Settings.from_env(home=args.home)
    app = Flask("compute_bridge.cli")
    app.config["SETTINGS"] = settings
    db.init_app(app)
    try:
        with app.app_context():
            user_id = users.create_user(
                args.username, args.email, password, role="admin" if args.admin else None
            )
            row = users.get_user(user_id)
    finally:
        app.extensions["db"].dispose()
    where = make_url(settings.db_url).render_as_string(hide_password=True)
    print(f"created user {row['username']} (id {user_id}, role {row['role']}) in {where}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="start the API server", description="Start the API server.")
    p.add_argument("--host", help="address to bind (default 127.0.0.1, env BRIDGE_HOST)")
    p.add_argument("--port", type=int, help="port (default 5000, env BRIDGE_PORT)")
    p.add_argument("--home", help="data directory (env BRIDGE_HOME)")
    p.add_argument("--tls-cert", help="certificate file for HTTPS (env BRIDGE_TLS_CERT)")
    p.add_argument("--tls-key", help="private key file for HTTPS (env BRIDGE_TLS_KEY)")
    p.add_argument("--server", choices=("gunicorn", "werkzeug"),
                   help="gunicorn (default, threaded workers) or werkzeug's development server "
                   "(env BRIDGE_SERVER)")
    p.add_argument("--workers", type=int,
                   help="gunicorn worker processes (default 1, env BRIDGE_WORKERS; each loads "
                   "its own local model; more than 1 wants BRIDGE_REDIS_URL)")
    p.add_argument("--threads", type=int,
                   help="threads per worker: concurrent requests and streams (default 32, "
                   "env BRIDGE_THREADS)")
    p.set_defaults(func=serve, log=True)

    from bridge.models.store import QUANTIZATIONS
    from colab_runtime.tunnel import TUNNEL_KINDS

    p = sub.add_parser(
        "worker", help="run a GPU worker on this machine",
        description="Run a worker here (the same engine as the API, behind HMAC-signed HTTP). "
        "Attach it from the API machine with `bridge connect --worker-url URL "
        "--worker-secret-file FILE`. The secret never goes on the command line.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free)")
    p.add_argument("--secret-file",
                   help=f"file holding the shared secret (else ${WORKER_SECRET_ENV})")
    p.add_argument("--model", help="model to load at start (from the model store)")
    p.add_argument("--quantization", choices=QUANTIZATIONS, help="for --model")
    p.add_argument("--backend", choices=("local", "echo"), default="local",
                   help="local: the real engine (default); echo: repeats the prompt, to try wiring")
    p.add_argument("--tunnel", choices=TUNNEL_KINDS, default="none",
                   help="expose it through a tunnel (ngrok needs $NGROK_AUTHTOKEN)")
    p.add_argument("--ready-file", help="write {url, public_url} as JSON here once serving")
    p.set_defaults(func=worker, log=True)

    user = sub.add_parser("user", help="manage accounts", description="Manage accounts.")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    p = user_sub.add_parser(
        "create", help="create an account in the local database",
        description="Create an account directly in the database of this machine's service "
        "(BRIDGE_HOME or DATABASE_URL), with or without a server running: the way to make the "
        "first admin. The password is read from a prompt, --password-stdin or $BRIDGE_PASSWORD.",
    )
    p.add_argument("username")
    p.add_argument("--email", required=True)
    p.add_argument("--admin", action="store_true", help="give the account the admin role")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--home", help="data directory (env BRIDGE_HOME)")
    p.set_defaults(func=user_create)

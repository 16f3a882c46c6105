"""The `bridge` command: serve the API (more subcommands join as capabilities land)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from collections.abc import Sequence

from bridge.config import Settings
from bridge.errors import BridgeError

log = logging.getLogger("compute_bridge.cli")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from local_api import create_app

    settings = Settings.from_env(
        host=args.host, port=args.port, home=args.home, tls_cert=args.tls_cert, tls_key=args.tls_key
    )
    app = create_app(settings)
    ssl_context = None
    scheme = "http"
    if settings.tls_cert or settings.tls_key:
        if not (settings.tls_cert and settings.tls_key):
            raise BridgeError("TLS needs both --tls-cert and --tls-key")
        ssl_context = (settings.tls_cert, settings.tls_key)
        scheme = "https"
    elif not _is_loopback(settings.host):
        log.warning(
            "WARNING: serving on %s without TLS: tokens and prompts cross the network in clear "
            "text. Use --tls-cert/--tls-key or bind 127.0.0.1.",
            settings.host,
        )
    server = make_server(settings.host, settings.port, app, threaded=True, ssl_context=ssl_context)
    print(f"Compute Bridge listening on {scheme}://{settings.host}:{server.port}", flush=True)
    print(f"Data directory: {settings.home}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Compute Bridge: one LLM API.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="start the API server")
    p.add_argument("--host", help="address to bind (default 127.0.0.1, env BRIDGE_HOST)")
    p.add_argument("--port", type=int, help="port (default 5000, env BRIDGE_PORT)")
    p.add_argument("--home", help="data directory (env BRIDGE_HOME)")
    p.add_argument("--tls-cert", help="certificate file for HTTPS (env BRIDGE_TLS_CERT)")
    p.add_argument("--tls-key", help="private key file for HTTPS (env BRIDGE_TLS_KEY)")
    p.set_defaults(func=serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BridgeError as exc:
        print(f"bridge: error: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bridge: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

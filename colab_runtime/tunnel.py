"""Tunnels that make a worker's port reachable: ``ngrok`` (via pyngrok) or ``none`` (loopback/LAN).

pyngrok is imported only when an ngrok tunnel is opened: it downloads the ngrok binary on
first use. Its process is started in a new session so it outlives a notebook kernel, but
pyngrok kills it at interpreter exit: open the tunnel in the process that must keep it
(the detached worker does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import BackendUnavailable, ValidationError

TUNNEL_KINDS = ("ngrok", "none")

# (port, auth token, basic auth "user:password" or None) -> (public url, close)
Connector = Callable[[int, str, str | None], tuple[str, Callable[[], None]]]


@dataclass
class Tunnel:
    """An open tunnel: where clients reach the worker, and how to close it."""

    public_url: str
    kind: str
    _closer: Callable[[], None] | None = field(default=None, repr=False)

    def close(self) -> None:
        """Close the tunnel (idempotent)."""
        closer, self._closer = self._closer, None
        if closer is not None:
            closer()


def _ngrok_connect(port: int, token: str, basic_auth: str | None) -> tuple[str, Callable[[], None]]:
    """Open an ngrok HTTP tunnel to ``port`` with pyngrok."""
    from pyngrok import conf, ngrok

    config = conf.PyngrokConfig(auth_token=token, start_new_session=True)
    options: dict[str, Any] = {"basic_auth": [basic_auth]} if basic_auth else {}
    tunnel = ngrok.connect(str(port), "http", pyngrok_config=config, **options)
    url = str(tunnel.public_url)
    return url, lambda: ngrok.disconnect(url, pyngrok_config=config)


def open_tunnel(
    kind: str,
    port: int,
    *,
    ngrok_token: str | None = None,
    basic_auth: str | None = None,
    host: str = "127.0.0.1",
    connector: Connector | None = None,
) -> Tunnel:
    """Open a tunnel of ``kind`` to a local ``port``; ``none`` just names ``http://host:port``."""
    if kind not in TUNNEL_KINDS:
        raise ValidationError(
            f"unknown tunnel {kind!r}; use one of {', '.join(TUNNEL_KINDS)}",
            details={"field": "tunnel"},
        )
    if not 0 < port < 65536:
        raise ValidationError(f"port {port} is out of range", details={"field": "port"})
    if basic_auth is not None and ":" not in basic_auth:
        raise ValidationError("basic_auth must be 'user:password'", details={"field": "basic_auth"})
    if kind == "none":
        if basic_auth is not None:
            raise ValidationError(
                "basic_auth needs an ngrok tunnel", details={"field": "basic_auth"}
            )
        return Tunnel(f"http://{host}:{port}", "none")
    if not ngrok_token:
        raise ValidationError(
            "an ngrok tunnel needs an ngrok_token (dashboard.ngrok.com: Your Authtoken)",
            details={"field": "ngrok_token"},
        )
    connect = connector or _ngrok_connect
    try:
        url, closer = connect(port, ngrok_token, basic_auth)
    except Exception as exc:  # pyngrok raises its own errors, OSError, or install failures
        message = str(exc).replace(ngrok_token, "***")
        if "ERR_NGROK_108" in message:  # ngrok's free plan: one agent per authtoken
            raise BackendUnavailable(
                "ngrok refused a second agent on this authtoken (ERR_NGROK_108): the free plan "
                "allows one at a time; stop the other one (another worker, or ngrok elsewhere) "
                "or detach its worker first",
                details={"tunnel": "ngrok", "reason": "ERR_NGROK_108"},
            ) from exc
        raise BackendUnavailable(
            f"tunnel could not be opened: {type(exc).__name__}: {message}",
            details={"tunnel": "ngrok"},
        ) from exc
    return Tunnel(url, "ngrok", closer)

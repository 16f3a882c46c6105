"""Downloads for non-admins reach public addresses only (no SSRF into this machine's network).

``non_public_address`` answers the API's early check; ``public_client`` enforces the rule
where it cannot be dodged: every TCP connection (the first URL, each redirect hop, each
retry) resolves the host once, refuses it unless every address is global, and connects to
the address it checked, so a DNS answer that changes in between (rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from bridge.downloads.sources import BLOCKED_ADDRESS, DownloadError

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _is_public(address: _Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _addresses(host: str, port: int) -> list[_Address]:
    """Every address ``host`` resolves to (an IP literal is its own answer)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def non_public_address(host: str, port: int) -> str | None:
    """The first loopback/private/link-local/reserved address ``host`` resolves to, else None.

    An unresolvable host is None here: the download itself then fails as unreachable.
    """
    try:
        found = _addresses(host, port)
    except (OSError, UnicodeError):
        return None
    return next((str(a) for a in found if not _is_public(a)), None)


class _PublicBackend(httpcore.SyncBackend):
    """Connects only to global addresses, and to the very address it checked."""

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None, socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:  # fmt: skip
        try:
            found = _addresses(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        blocked = [a for a in found if not _is_public(a)]
        if blocked or not found:
            where = blocked[0] if blocked else "no address"
            raise DownloadError(BLOCKED_ADDRESS, f"Refusing to connect to {host} ({where}): "
                                "downloads by non-admins may only reach public addresses",
                                host=host)
        return super().connect_tcp(str(found[0]), port, timeout, local_address, socket_options)


class _PublicTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        # httpx builds its pool without a network-backend option; this one is the same pool
        # (TLS still checks the certificate against the URL's host name) with the guard.
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(),
                                             network_backend=_PublicBackend())


def public_client(**options: Any) -> httpx.Client:
    """An httpx client that can reach public addresses only (environment proxies ignored)."""
    return httpx.Client(transport=_PublicTransport(), trust_env=False, **options)

"""What a hostile web page in the operator's browser could do: DNS rebinding and cross-site posts.

- **Host allow-list** (the class of Ollama's CVE-2024-28224, fixed there by
  ``allowedHostsMiddleware``; Jupyter's ``local_hostnames``/``allow_remote_access``): a page on a
  rebinding domain reaches the loopback service under *its* name, so only the names the service
  is configured for are served: IP literals (which cannot be rebound), ``localhost`` and
  ``*.localhost``, this machine's hostname, and ``BRIDGE_ALLOWED_HOSTS``. Anything else is 403.
- **Cross-site state changes**: a simple request (``text/plain`` form or ``fetch``) needs no CORS
  preflight, so a foreign page could register the first (admin) account. Browsers mark such
  requests with ``Origin`` and ``Sec-Fetch-Site`` (Fetch standard, "Sec-Fetch-Site"); a
  state-changing request from another origin that is not in ``BRIDGE_CORS_ORIGINS`` is 403.
  JSON bodies must say so (:func:`local_api.validation.json_body` answers 415 otherwise).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from flask import Flask, request

from bridge.config import Settings
from bridge.errors import Forbidden

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


def parse_hosts(raw: str) -> frozenset[str]:
    """BRIDGE_ALLOWED_HOSTS: comma-separated host names (``*`` serves any Host)."""
    return frozenset(h.strip().lower().rstrip(".") for h in raw.split(",") if h.strip())


def _hostname(host_header: str) -> str:
    """The name part of a Host header: ``[::1]:5000`` -> ``::1``, ``a.b:80`` -> ``a.b``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def host_allowed(host_header: str, allowed: frozenset[str]) -> bool:
    """Whether a request naming ``host_header`` is served (see the module docstring)."""
    if "*" in allowed:
        return True
    name = _hostname(host_header)
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True  # an address literal: the browser's origin is that address, no rebinding
    except ValueError:
        pass
    if name in LOCAL_NAMES or name.endswith(".localhost") or name in allowed:
        return True
    return name == socket.gethostname().lower()


def _same_origin(origin: str) -> bool:
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc.lower() == request.host.lower()


def cross_site_refused(cors_origins: frozenset[str]) -> str | None:
    """Why the current state-changing request comes from a foreign page, or None."""
    origin = request.headers.get("Origin")
    trusted = origin is not None and ("*" in cors_origins or origin.rstrip("/") in cors_origins)
    if trusted:
        return None
    if origin is not None and origin != "null" and not _same_origin(origin):
        return f"Origin {origin[:100]!r} is not allowed (BRIDGE_CORS_ORIGINS)"
    if origin == "null":
        return "Requests from an opaque origin (sandboxed page, file) are refused"
    fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
    if fetch_site in ("cross-site", "same-site"):
        return f"Cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    return None


def init_app(app: Flask) -> None:
    """Refuse unknown Host names and cross-site state changes before anything else runs."""
    from local_api.security import parse_origins

    settings: Settings = app.config["SETTINGS"]
    allowed = parse_hosts(settings.allowed_hosts)
    origins = parse_origins(settings.cors_origins)

    @app.before_request
    def _guard() -> None:
        host = request.host
        if not host_allowed(host, allowed):
            raise Forbidden(
                f"Host {host[:100]!r} is not served here: add it to BRIDGE_ALLOWED_HOSTS",
                details={"reason": "host_not_allowed"},
            )
        if request.method not in SAFE_METHODS:
            reason = cross_site_refused(origins)
            if reason:
                raise Forbidden(reason, details={"reason": "cross_site"})

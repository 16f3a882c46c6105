"""URLs of remote compute: credentials kept out of what is shown, logged or stored in clear."""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote, urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """The URL without user:password, query or fragment: safe to log, store and show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a bad port or bracket: show nothing of it rather than a secret
        return "<invalid url>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}"


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """``http://user:pw@host/p`` -> (``http://host/p``, (user, pw)); basic auth travels apart."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=hostport)), (unquote(user), unquote(password))


USERINFO_HINT = ("user:password must be percent-encoded in a URL (# as %23, / as %2F, "
                 "? as %3F, @ as %40)")


def userinfo_misplaced(url: str) -> bool:
    """Whether ``url`` looks like ``user:pass@host`` with an unencoded ``#``, ``/`` or ``?`` in
    the password: the parser then ends the host early and takes part of the password for the
    host or port, so that part would be shown in any message naming the host."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return "@" in url
    after = url.partition(netloc)[2] if netloc else url
    return "@" not in netloc and ":" in netloc and "@" in after


def url_error(url: str, exc: Exception) -> str:
    """A parser's complaint about ``url``, fit to show: it never quotes any part of userinfo.

    Python's and httpx's messages quote the port or host they could not parse, which for
    ``http://user:p#ss@host`` is the start of the password (RFC 3986 section 3.2.1 ends the
    authority at the first ``#``, ``/`` or ``?``).
    """
    if "@" in url:
        return USERINFO_HINT
    return str(exc).replace(url, redact_url(url))


def has_userinfo(url: str) -> bool:
    """Whether the URL carries ``user[:password]@``."""
    return "@" in urlsplit(url).netloc


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# What to check when remote compute does not answer (docs/troubleshooting.md says the same)
UNREACHABLE_HINT = ("check the URL and port, that the server listens on an address this "
                    "machine can reach (e.g. --ip 0.0.0.0), and any firewall; across NAT or "
                    "from Colab, use a tunnel (ngrok)")


def connect_failure(exc: BaseException) -> str:
    """Why a connection failed, in plain words, from any HTTP library's exception (requests,
    httpx, urllib3): their own text ("HTTPConnectionPool ... Max retries exceeded") is not shown."""
    text = f"{type(exc).__name__} {exc} {exc.__cause__ or ''}".lower()
    if "timeout" in text or "timed out" in text:
        return "timed out"
    if "refused" in text:
        return "connection refused: nothing listens there"
    if any(s in text for s in ("name or service not known", "nodename nor servname",
                               "getaddrinfo", "name resolution", "resolve")):
        return "the host name does not resolve"
    if "ssl" in text or "certificate" in text:
        return "the TLS handshake failed"
    return "the connection failed"

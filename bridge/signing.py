"""HMAC-SHA256 request signing, shared by RemoteBackend/worker and API client keys.

Canonical string (lines joined by ``\\n``)::

    bridge-hmac-v2
    <METHOD upper-case>
    <path with query, as sent, e.g. /generate?x=1>
    <timestamp: integer unix seconds>
    <nonce>
    <key id: the X-Bridge-Key-Id header, empty when none is sent>
    <sha256 hex of the body>

Headers: ``X-Bridge-Timestamp``, ``X-Bridge-Nonce``, ``X-Bridge-Signature`` (hex HMAC) and,
optionally, ``X-Bridge-Key-Id`` (which secret the verifier should look up). v2 signs the key
id, the one header that selects a key. The verifier still accepts v1 (the same lines without
the key id) from older clients; a replay with another key id fails either way, because nonces
are remembered per *secret*, not per key-id header.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from bridge.errors import RateLimitExceeded, Unauthorized

SCHEME = "bridge-hmac-v2"
SCHEME_V1 = "bridge-hmac-v1"  # accepted from older clients: signs no key id
TIMESTAMP_HEADER = "X-Bridge-Timestamp"
NONCE_HEADER = "X-Bridge-Nonce"
SIGNATURE_HEADER = "X-Bridge-Signature"
KEY_ID_HEADER = "X-Bridge-Key-Id"
_NONCE_RE = re.compile(r"^[A-Za-z0-9_\-]{16,128}$")

SecretLookup = Callable[[str | None], str | bytes | None]


class HeaderItems(Protocol):
    """Anything with ``items()`` of header pairs: a dict, werkzeug's or httpx's Headers."""

    def items(self) -> Iterable[tuple[str, str]]: ...


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def canonical_string(method: str, path: str, timestamp: str, nonce: str, body: bytes,
                     key_id: str | None = None, *, scheme: str = SCHEME) -> bytes:
    """The exact bytes that are signed (``scheme`` v1 leaves the key id out)."""
    digest = hashlib.sha256(body).hexdigest()
    lines = [scheme, method.upper(), path, timestamp, nonce]
    if scheme != SCHEME_V1:
        lines.append(key_id or "")
    return "\n".join([*lines, digest]).encode("utf-8")


def signature(secret: str | bytes, message: bytes) -> str:
    """Hex HMAC-SHA256 of ``message``."""
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(
    secret: str | bytes,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    key_id: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that authenticate one request (``path`` includes its query string)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    headers = {
        TIMESTAMP_HEADER: ts,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature(
            secret, canonical_string(method, path, ts, nonce, body, key_id)),
    }
    if key_id is not None:
        headers[KEY_ID_HEADER] = key_id
    return headers


def key_fingerprint(secret: str | bytes) -> str:
    """A stable, non-secret name of a signing secret (the namespace of its nonces)."""
    return hmac.new(_key(secret), b"bridge-nonce-namespace", hashlib.sha256).hexdigest()[:32]


def path_from_environ(environ: Mapping[str, Any]) -> str:
    """The signed path of a WSGI request: the raw URI when the server kept it, else rebuilt."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        return raw
    path = quote(str(environ.get("PATH_INFO", "")).encode("latin-1"), safe="/:@!$&'()*+,;=-._~")
    path = (str(environ.get("SCRIPT_NAME", "")) + path) or "/"
    query = str(environ.get("QUERY_STRING", ""))
    return f"{path}?{query}" if query else path


class Verifier:
    """Checks signed requests: signature, timestamp within ``max_skew`` seconds, fresh nonce.

    Nonces are remembered per key id, ``max_nonces`` per key at most: one busy (or hostile)
    key fills only its own window, never another key's.
    """

    def __init__(
        self,
        secret_lookup: SecretLookup | str | bytes,
        max_skew: int = 300,
        *,
        max_nonces: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secret_lookup, str | bytes):
            fixed = secret_lookup
            self._lookup: SecretLookup = lambda _key_id: fixed
        else:
            self._lookup = secret_lookup
        self.max_skew = max_skew
        self.max_nonces = max_nonces
        self._clock = clock
        self._lock = threading.Lock()
        self._nonces: dict[tuple[str, str], float] = {}
        self._per_key: dict[str, int] = {}
        self._expiry: list[tuple[float, str, str]] = []

    def verify(self, method: str, path: str, headers: HeaderItems, body: bytes = b"") -> str | None:
        """Raise Unauthorized unless the request is signed, fresh and new; returns the key id."""
        lower = {k.lower(): v for k, v in headers.items()}
        ts = lower.get(TIMESTAMP_HEADER.lower())
        nonce = lower.get(NONCE_HEADER.lower())
        sig = lower.get(SIGNATURE_HEADER.lower())
        key_id = lower.get(KEY_ID_HEADER.lower())
        if not (ts and nonce and sig):
            raise Unauthorized("Missing request signature")
        if not ts.isdigit():
            raise Unauthorized("Malformed request timestamp")
        now = self._clock()
        if abs(now - int(ts)) > self.max_skew:
            raise Unauthorized("Stale request timestamp (check the clocks)")
        if not _NONCE_RE.match(nonce):
            raise Unauthorized("Malformed request nonce")
        secret = self._lookup(key_id)
        presented = sig.encode("ascii", "replace")
        valid = False
        for scheme in (SCHEME, SCHEME_V1):
            message = canonical_string(method, path, ts, nonce, body, key_id, scheme=scheme)
            expected = signature(secret or b"", message).encode("ascii")
            # compare_digest on every path so a missing key costs the same time as a wrong one
            valid = hmac.compare_digest(expected, presented) or valid
        if secret is None or not valid:
            raise Unauthorized("Invalid request signature")
        # Nonces belong to the secret that verified them: another key-id header naming the
        # same secret (a worker has one secret whatever the header says) is the same key.
        self._remember(key_fingerprint(secret), nonce, int(ts) + self.max_skew, now)
        return key_id

    def _remember(self, key: str, nonce: str, expires: float, now: float) -> None:
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                _, old_key, old = heapq.heappop(self._expiry)
                if self._nonces.pop((old_key, old), None) is not None:
                    self._per_key[old_key] -= 1
                    if not self._per_key[old_key]:
                        del self._per_key[old_key]
            if (key, nonce) in self._nonces:
                raise Unauthorized("Replayed request (nonce already used)")
            if self._per_key.get(key, 0) >= self.max_nonces:
                oldest = min(e for e, k, _ in self._expiry if k == key)
                raise RateLimitExceeded(
                    "Too many signed requests in the replay window for this key",
                    headers={"Retry-After": str(max(1, int(oldest - now)))},
                )
            self._nonces[(key, nonce)] = expires
            self._per_key[key] = self._per_key.get(key, 0) + 1
            heapq.heappush(self._expiry, (expires, key, nonce))

"""A small client for Colab's control plane: an undocumented API, kept behind this one class."""

# Endpoints and shapes (colab-protocol.md) are read from Google's own Colab command-line
# client, not a published contract, and may change without notice. Errors map onto
# bridge.errors: 401 Unauthorized, 403 Forbidden, 412 Conflict, 429 RateLimitExceeded;
# unreachable, other 4xx/5xx or malformed answers are BackendUnavailable.

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import requests
from google.auth.exceptions import GoogleAuthError, RefreshError

from bridge.errors import (
    BackendUnavailable,
    BridgeError,
    Conflict,
    Forbidden,
    NotFound,
    RateLimitExceeded,
    Unauthorized,
    ValidationError,
)

log = logging.getLogger(__name__)

COLAB_URL = "https://colab.research.google.com"
KEEPALIVE_URL = (
    "https://colab.pa.googleapis.com/$rpc/google.internal.colab.v1.RuntimeService/"
    "KeepAliveAssignment"
)
XSSI_PREFIX = ")]}'\n"
VARIANTS: dict[str, frozenset[str]] = {
    "DEFAULT": frozenset({"NONE"}),
    "GPU": frozenset({"T4", "L4", "A100", "H100"}),
    "TPU": frozenset({"V2-8", "V5E1", "V6E1"}),
}
_STATUS_ERRORS: dict[int, tuple[type[BridgeError], str]] = {
    401: (Unauthorized, "Colab refused the Google credentials (401); sign in again"),
    403: (Forbidden, "Colab denied access (403); the account lacks the colaboratory scope"),
    404: (NotFound, "Colab does not know this runtime (404)"),
    412: (Conflict, "too many assignments: release a Colab runtime first (412)"),
    429: (RateLimitExceeded, "Colab is rate limiting this account (429)"),
}


def new_notebook_hash() -> str:
    """A fresh `nbh`: a UUID with - as _, right-padded with . to 44 characters."""
    return str(uuid.uuid4()).replace("-", "_").ljust(44, ".")


@dataclass(frozen=True)
class Assignment:
    """One assigned runtime: its endpoint and its Jupyter proxy (URL, token, expiry)."""

    endpoint: str
    proxy_url: str
    proxy_token: str
    token_expires_at: float
    accelerator: str
    variant: str = "GPU"

    def token_expires_within(self, seconds: float, now: float) -> bool:
        """Whether the proxy token expires within `seconds` of `now`."""
        return self.token_expires_at - now <= seconds


class ColabClient:
    """Colab's undocumented control plane (assign, list, release, keep alive) over one session."""

    def __init__(
        self,
        session: requests.Session,
        *,
        base_url: str = COLAB_URL,
        keepalive_url: str = KEEPALIVE_URL,
        client_agent: str = "compute-bridge",
        notebook_hash: str | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.keepalive_url = keepalive_url
        self.client_agent = client_agent
        self.notebook_hash = notebook_hash or new_notebook_hash()
        self.clock = clock
        self.timeout = timeout

    def assign(self, accelerator: str = "T4", variant: str = "GPU") -> Assignment:
        """Assign a runtime (or get the one this client already holds)."""
        _validate(accelerator, variant)
        params = {"nbh": self.notebook_hash, "variant": variant, "accelerator": accelerator}
        body = self._call("GET", "/tun/m/assign", params=params)
        if "runtimeProxyInfo" not in body:
            token = _field(body, "token", "assign ticket")
            body = self._call("POST", "/tun/m/assign", params=params, xsrf=token)
        return self._assignment(body, accelerator, variant)

    def list_assignments(self) -> list[Assignment]:
        """Every runtime assigned to this account."""
        body = self._call("GET", "/tun/m/assignments")
        items = body.get("assignments") or []
        if not isinstance(items, list):
            raise BackendUnavailable("Colab answered a malformed assignment list")
        return [self._assignment(item, "", "") for item in items]

    def release(self, endpoint: str) -> None:
        """Release (unassign) a runtime; it stops being billed."""
        path = f"/tun/m/unassign/{_endpoint(endpoint)}"
        token = _field(self._call("GET", path), "token", "unassign ticket")
        self._call("POST", path, xsrf=token)

    def keep_alive(self, endpoint: str) -> None:
        """Tell Colab the runtime is in use, so it is not reclaimed as idle."""
        self._call(
            "POST",
            self.keepalive_url,
            data=json.dumps([_endpoint(endpoint)]),
            content_type="application/json+protobuf",
            expect_json=False,
        )

    def renew_proxy_token(self, assignment: Assignment) -> Assignment:
        """A fresh proxy token for a running runtime; never assigns a new one."""
        # Assign-GET with the same nbh answers the current assignment with a new token.
        # An expired token is not a dead runtime: only a missing assignment is.
        params = {
            "nbh": self.notebook_hash,
            "variant": assignment.variant,
            "accelerator": assignment.accelerator,
        }
        body = self._call("GET", "/tun/m/assign", params=params)
        if "runtimeProxyInfo" in body:
            renewed = self._assignment(body, assignment.accelerator, assignment.variant)
            if renewed.endpoint in ("", assignment.endpoint):
                return replace(renewed, endpoint=assignment.endpoint)
        for current in self.list_assignments():
            if current.endpoint == assignment.endpoint:
                return replace(current, accelerator=assignment.accelerator,
                               variant=assignment.variant)
        raise BackendUnavailable(f"Colab runtime {assignment.endpoint} is no longer assigned")

    def _assignment(self, body: dict[str, Any], accelerator: str, variant: str) -> Assignment:
        proxy = body.get("runtimeProxyInfo")
        if not isinstance(proxy, dict):
            raise BackendUnavailable("Colab answered an assignment without runtimeProxyInfo")
        try:
            expires_in = float(proxy.get("tokenExpiresInSeconds", 3600))
        except (TypeError, ValueError) as exc:
            raise BackendUnavailable("Colab answered a malformed token expiry") from exc
        return Assignment(
            endpoint=str(body.get("endpoint", "")),
            proxy_url=str(_field(proxy, "url", "runtimeProxyInfo")),
            proxy_token=str(_field(proxy, "token", "runtimeProxyInfo")),
            token_expires_at=self.clock() + expires_in,
            accelerator=str(body.get("accelerator") or accelerator),
            variant=str(body.get("variant") or variant),
        )

    def _call(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, str] | None = None,
        xsrf: str | None = None,
        data: str | None = None,
        content_type: str | None = None,
        expect_json: bool = True,
    ) -> dict[str, Any]:
        is_url = path_or_url.startswith(("http://", "https://"))
        url = path_or_url if is_url else self.base_url + path_or_url
        query = dict(params or {}) if is_url else {"authuser": "0", **(params or {})}
        headers = {"Accept": "application/json", "X-Goog-Colab-Client-Agent": self.client_agent}
        if xsrf is not None:
            headers["X-Goog-Colab-Token"] = xsrf
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            response = self.session.request(
                method, url, params=query, headers=headers, data=data, timeout=self.timeout
            )
        except RefreshError as exc:
            raise Unauthorized(f"Google sign-in expired or was revoked: {exc}") from exc
        except GoogleAuthError as exc:  # e.g. TransportError: the token endpoint is unreachable
            raise BackendUnavailable(f"cannot renew the Google sign-in: {exc}") from exc
        except requests.RequestException as exc:
            raise BackendUnavailable(f"cannot reach Colab at {url}: {exc}") from exc
        status = response.status_code
        if status in _STATUS_ERRORS:
            cls, message = _STATUS_ERRORS[status]
            raise cls(message, details={"upstream_status": status})
        if status >= 400:
            raise BackendUnavailable(
                f"Colab answered HTTP {status} for {method} {path_or_url}",
                details={"upstream_status": status},
            )
        return _parse(response.text) if expect_json else {}


class KeepAlive:
    """A daemon thread that keeps one runtime alive and renews its proxy token before expiry."""

    def __init__(
        self,
        client: ColabClient,
        assignment: Assignment,
        *,
        interval: float = 60.0,
        renew_margin: float = 300.0,
        on_renew: Callable[[Assignment], None] | None = None,
    ) -> None:
        self.client = client
        self.assignment = assignment
        self.interval = interval
        self.renew_margin = renew_margin
        self.on_renew = on_renew
        self.last_error: BridgeError | None = None  # of the last round; None when it went well
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """One round: a keep-alive, then a token renewal when expiry is near."""
        try:
            self.client.keep_alive(self.assignment.endpoint)
            if self.assignment.token_expires_within(self.renew_margin, self.client.clock()):
                self.assignment = self.client.renew_proxy_token(self.assignment)
                if self.on_renew is not None:
                    self.on_renew(self.assignment)
            self.last_error = None
        except Exception as exc:
            # A failed round is retried next round; it never declares the runtime dead.
            if not isinstance(exc, BridgeError):
                log.exception("keep-alive for %s failed unexpectedly", self.assignment.endpoint)
                exc = BackendUnavailable(f"keep-alive failed: {type(exc).__name__}: {exc}")
            self.last_error = exc
            log.warning("keep-alive for %s failed: %s", self.assignment.endpoint, exc.message)

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            raise Conflict("keep-alive already started")
        self._thread = threading.Thread(
            target=self._run, name=f"colab-keepalive-{self.assignment.endpoint}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()  # never raises: an error is kept in last_error and retried


def _validate(accelerator: str, variant: str) -> None:
    if variant not in VARIANTS:
        raise ValidationError(
            f"unknown Colab variant {variant!r}; expected one of {sorted(VARIANTS)}"
        )
    if accelerator not in VARIANTS[variant]:
        raise ValidationError(
            f"accelerator {accelerator!r} does not fit variant {variant!r}; "
            f"expected one of {sorted(VARIANTS[variant])}"
        )


def _endpoint(endpoint: str) -> str:
    if not endpoint or "/" in endpoint or endpoint in (".", ".."):
        raise ValidationError(f"invalid Colab runtime endpoint {endpoint!r}")
    return endpoint


def _parse(text: str) -> dict[str, Any]:
    body = text[len(XSSI_PREFIX):] if text.startswith(XSSI_PREFIX) else text
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise BackendUnavailable(f"Colab answered malformed JSON: {body[:80]!r}") from exc
    if not isinstance(value, dict):
        raise BackendUnavailable(f"Colab answered JSON that is not an object: {body[:80]!r}")
    return value


def _field(body: dict[str, Any], name: str, what: str) -> Any:
    value = body.get(name)
    if not value:
        raise BackendUnavailable(f"Colab answered a {what} without {name!r}")
    return value

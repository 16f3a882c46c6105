"""A small client for Colab's control plane: an undocumented API, kept behind this one class."""

# Endpoints and shapes (colab-protocol.md) are read from Google's own clients, the Colab CLI
# (googlecolab/google-colab-cli) and the VS Code extension (googlecolab/colab-vscode), not a
# published contract, and may change without notice. Errors map onto bridge.errors: 401
# Unauthorized, 403 Forbidden, 412 ColabTooManyAssignments, 503 on assign
# ColabAcceleratorUnavailable, 400 on assign ColabNotEntitled, an `outcome` (number or name)
# ColabQuotaExceeded or ColabDenied, 429 RateLimitExceeded; unreachable, other 4xx/5xx or
# malformed answers are BackendUnavailable. The runtime proxy's 401 or empty 404 is
# ProxyTokenRefused (proxy.py): renew the token from the list, then decide.

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from google.auth.exceptions import GoogleAuthError, RefreshError

from bridge.errors import (
    BackendUnavailable,
    BridgeError,
    ColabTooManyAssignments,
    Forbidden,
    NotFound,
    RateLimitExceeded,
    Unauthorized,
)
from colab_runtime.colab_answers import (
    VARIANT_NAMES,
    VARIANTS,
    assign_refusal,
    check_outcome,
    eligible_of,
    field,
    name_of,
    parse,
)
from colab_runtime.colab_answers import check_endpoint as _endpoint
from colab_runtime.colab_answers import check_request as _validate
from colab_runtime.oauth import refresh_refused
from colab_runtime.proxy import (
    CLIENT_AGENT,
    CLIENT_AGENT_HEADER,
    PROXY_TOKEN_HEADER,
    is_refusal,
    refusal,
)

COLAB_URL = "https://colab.research.google.com"
COLAB_API_URL = "https://colab.pa.googleapis.com"  # user-info (the VS Code extension's GAPI)
KEEPALIVE_TIMEOUT = 10.0  # the CLI's; a read timeout counts as success
_STATUS_ERRORS: dict[int, tuple[type[BridgeError], str]] = {
    401: (Unauthorized, "Colab refused the Google credentials (401); sign in again"),
    403: (Forbidden, "Colab denied access (403)"),
    404: (NotFound, "Colab does not know this runtime (404)"),
    412: (ColabTooManyAssignments, "too many Colab runtimes are assigned to this account: "
          "release one (Colab > Runtime > Manage sessions) and connect again (412)"),
    429: (RateLimitExceeded, "Colab is rate limiting this account (429)"),
}


def new_notebook_hash() -> str:
    """A fresh `nbh`: a UUID with - as _, right-padded with . to 44 characters."""
    return str(uuid.uuid4()).replace("-", "_").ljust(44, ".")


def variant_of(accelerator: str) -> str:
    """The variant an accelerator belongs to."""
    return next((v for v, accs in VARIANTS.items() if accelerator in accs), "GPU")


@dataclass(frozen=True)
class Assignment:
    """One assigned runtime: its endpoint, its Jupyter proxy (URL, token, expiry) and idle limit.

    ``proxy_url`` is empty for a list entry without ``runtimeProxyInfo`` (a browser runtime).
    ``fit`` is Colab's idle timeout in seconds (None when not told).
    """

    endpoint: str
    proxy_url: str
    proxy_token: str
    token_expires_at: float
    accelerator: str
    variant: str = "GPU"
    fit: float | None = None
    machine_shape: str = ""

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
        api_url: str = COLAB_API_URL,
        client_agent: str = CLIENT_AGENT,
        notebook_hash: str | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
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
            token = field(body, "token", "assign ticket")
            try:
                body = self._call("POST", "/tun/m/assign", params=params, xsrf=token)
            except BackendUnavailable as exc:
                eligible = (self._eligible_or_none(variant)
                            if exc.details.get("upstream_status") == 503 else None)
                raise assign_refusal(exc, accelerator, variant, eligible) from exc
        check_outcome(body)
        found = self._assignment(body, accelerator, variant)
        if found is None:
            raise BackendUnavailable("Colab answered an assignment without runtimeProxyInfo")
        return found

    def list_assignments(self) -> list[Assignment]:
        """Every runtime assigned to this account; each call mints fresh proxy tokens."""
        body = self._call("GET", "/tun/m/assignments")
        items = body.get("assignments") or []
        if not isinstance(items, list):
            raise BackendUnavailable("Colab answered a malformed assignment list")
        found = []
        for item in items:
            if isinstance(item, dict) and item.get("endpoint"):
                one = self._assignment(item, "", "", proxy_required=False)
                if one is not None:
                    found.append(one)
        return found

    def find(self, endpoint: str) -> Assignment | None:
        """This runtime as the assignment list shows it now (None: no longer assigned)."""
        return next((a for a in self.list_assignments() if a.endpoint == endpoint), None)

    def eligible_accelerators(self, variant: str) -> list[str]:
        """The accelerators of ``variant`` this account may have (GET /v1/user-info on the API
        host, as the VS Code extension and the CLI read ``eligibleAccelerators``)."""
        return eligible_of(self._call("GET", "/v1/user-info", base=self.api_url), variant)

    def _eligible_or_none(self, variant: str) -> list[str] | None:
        try:
            return self.eligible_accelerators(variant)
        except BridgeError:  # the refusal is told anyway, with the accelerators of the variant
            return None

    def runtime_started(self, assignment: Assignment) -> str | None:
        """When the runtime's Jupyter server started (its ``/api/status``, through the runtime
        proxy with the proxy token); a VM restart changes it. None: the runtime did not say (no
        token yet, unreachable, booting). Raises ProxyTokenRefused on a 401 or an empty 404:
        the token expired or went stale, which says nothing about the runtime."""
        if not (assignment.proxy_url and assignment.proxy_token):
            return None
        headers = {PROXY_TOKEN_HEADER: assignment.proxy_token,
                   CLIENT_AGENT_HEADER: self.client_agent, "Accept": "application/json"}
        try:
            response = requests.get(assignment.proxy_url.rstrip("/") + "/api/status",
                                    headers=headers, timeout=KEEPALIVE_TIMEOUT)
        except requests.RequestException:
            return None
        if is_refusal(response.status_code, response.content):
            raise refusal(response.status_code, "/api/status")
        try:
            started = response.json().get("started") if response.status_code == 200 else None
        except (ValueError, AttributeError):
            return None
        return str(started) if started else None

    def release(self, endpoint: str) -> None:
        """Release (unassign) a runtime; it stops being billed. The POST answers 204/empty."""
        path = f"/tun/m/unassign/{_endpoint(endpoint)}"
        token = field(self._call("GET", path), "token", "unassign ticket")
        self._call("POST", path, xsrf=token)

    def keep_alive(self, endpoint: str) -> None:
        """Tell Colab the runtime is in use (GET /tun/m/<endpoint>/keep-alive/, as the CLI does).

        A read timeout is success: Colab's front end records the activity before forwarding.
        """
        try:
            self._call("GET", f"/tun/m/{_endpoint(endpoint)}/keep-alive/",
                       extra={"X-Colab-Tunnel": "Google"}, timeout=KEEPALIVE_TIMEOUT)
        except BackendUnavailable as exc:
            if not isinstance(exc.__cause__, requests.ReadTimeout):
                raise

    def renew_proxy_token(self, assignment: Assignment,
                          current: Assignment | None = None) -> Assignment:
        """A fresh proxy token from the assignment list (as Google's CLI renews); never assigns.
        ``current``: this runtime's entry of a list just read (else the list is read now).

        An expired token is not a dead runtime: only a runtime missing from the list is
        (NotFound with reason ``gone``).
        """
        current = current or self.find(assignment.endpoint)
        if current is None:
            raise NotFound(f"Colab runtime {assignment.endpoint} is no longer assigned",
                           details={"reason": "gone"})
        if not current.proxy_url:
            raise BackendUnavailable(f"Colab lists {assignment.endpoint} without its proxy")
        return Assignment(assignment.endpoint, current.proxy_url, current.proxy_token,
                          current.token_expires_at, assignment.accelerator, assignment.variant,
                          assignment.fit if current.fit is None else current.fit,
                          current.machine_shape or assignment.machine_shape)

    def _assignment(self, body: dict[str, Any], accelerator: str, variant: str, *,
                    proxy_required: bool = True) -> Assignment | None:
        proxy = body.get("runtimeProxyInfo")
        if not isinstance(proxy, dict):
            if proxy_required:
                return None
            proxy = {"url": "", "token": "", "tokenExpiresInSeconds": 0}
        try:
            expires_in = float(proxy.get("tokenExpiresInSeconds", 3600))
            fit = float(body["fit"]) if body.get("fit") is not None else None
        except (TypeError, ValueError) as exc:
            raise BackendUnavailable("Colab answered a malformed token expiry or fit") from exc
        url, token = proxy.get("url"), proxy.get("token")
        if proxy_required and not (url and token):
            raise BackendUnavailable("Colab answered a runtimeProxyInfo without url or token")
        return Assignment(
            endpoint=str(body.get("endpoint", "")),
            proxy_url=str(url or ""),
            proxy_token=str(token or ""),
            token_expires_at=self.clock() + expires_in,
            accelerator=str(body.get("accelerator") or accelerator),
            variant=name_of(body.get("variant"), VARIANT_NAMES) or variant,
            fit=fit,
            machine_shape=name_of(body.get("machineShape"), {}),
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        xsrf: str | None = None,
        extra: dict[str, str] | None = None,
        timeout: float | None = None,
        base: str | None = None,
    ) -> dict[str, Any]:
        url = (base or self.base_url) + path
        query = {"authuser": "0", **(params or {})}
        headers = {"Accept": "application/json", CLIENT_AGENT_HEADER: self.client_agent,
                   **(extra or {})}
        if xsrf is not None:
            headers["X-Goog-Colab-Token"] = xsrf
        try:
            response = self.session.request(method, url, params=query, headers=headers,
                                            timeout=timeout or self.timeout)
        except RefreshError as exc:
            raise refresh_refused(exc) from exc
        except GoogleAuthError as exc:  # e.g. TransportError: the token endpoint is unreachable
            raise BackendUnavailable(f"cannot renew the Google sign-in: {exc}") from exc
        except requests.RequestException as exc:
            raise BackendUnavailable(f"cannot reach Colab at {url}: {exc}") from exc
        status = response.status_code
        if status in _STATUS_ERRORS:
            cls, message = _STATUS_ERRORS[status]
            raise cls(message, details={"upstream_status": status})
        if status >= 400:
            raise BackendUnavailable(f"Colab answered HTTP {status} for {method} {path}",
                                     details={"upstream_status": status})
        return parse(response.text)


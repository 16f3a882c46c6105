"""A loopback stand-in for Colab's control plane, as strict as the real one.

Each rule cites the Google client it was read from (colab-protocol.md):
CLI = googlecolab/google-colab-cli (mid-2026), EXT = googlecolab/colab-vscode (v0.9).
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, abort, request

from tests.support.fake_google import Tokens

XSSI = ")]}'\n"
OLD_KEEPALIVE = "/$rpc/google.internal.colab.v1.RuntimeService/KeepAliveAssignment"
VARIANT_NUMBERS = {"DEFAULT": 0, "GPU": 1, "TPU": 2}  # CLI: the POST answers integers
# EXT (src/colab/client/v1/api.ts, enum Outcome): the POST's `outcome` is a number
OUTCOME_NUMBERS = {"QUOTA_DENIED_REQUESTED_VARIANTS": 1, "QUOTA_EXCEEDED_USAGE_TIME": 2,
                   "SUCCESS": 4, "DENYLISTED": 5}
PROXY_TOKEN_HEADER, PROXY_TOKEN_QUERY = "X-Colab-Runtime-Proxy-Token", "colab-runtime-proxy-token"


@dataclass
class ColabState:
    """The control plane's view: assignments, tickets, keep-alives and a clock tests move."""

    tokens: Tokens | None = None  # None: accept any bearer (or none)
    max_assignments: int = 2
    token_ttl: int = 3600
    fit: int = 5400  # CLI/EXT: the POST's `fit`, idle seconds before a reclaim
    session_cap: int = 12 * 3600  # protocol page: sessions end after at most ~12 h (free)
    runtime_url: str | None = None  # proxy URL handed out; default: this server's /runtime/
    now: float = 1_000_000.0
    clock: Callable[[], float] | None = None  # set: `now` follows it (a test on real time)
    assignments: dict[str, dict[str, Any]] = field(default_factory=dict)
    # EXT (ListedAssignmentSchema): runtimeProxyInfo is optional in a list entry; these
    # endpoints are listed without it (CLI: the field is required, so by default it is there)
    listed_without_proxy: set[str] = field(default_factory=set)
    tickets: set[str] = field(default_factory=set)
    keepalives: list[str] = field(default_factory=list)
    reclaimed: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: list[tuple[int, str]] = field(default_factory=list)  # (status, raw body)
    outcome: str | None = None  # a name of OUTCOME_NUMBERS; the POST answers its number (EXT)
    unavailable: set[str] = field(default_factory=set)  # EXT: 503 on assign (none free now)
    not_entitled: set[str] = field(default_factory=set)  # EXT: 400 on assign
    keepalive_refusal: int | None = None  # an HTTP status every keep-alive answers
    booting: int = 0  # CLI: the next N runtime-proxy checks answer 502 (a VM still booting)
    # CLI (contents.py; PRs #123, #136, issue #106): the proxy answers an expired or stale token
    # with an empty 404, sometimes a 401, as it answers for a runtime that is gone
    proxy_refusal: int = 404
    stale_tokens: int = 0  # the next N proxy tokens minted are stale from the start (refused)
    stale: list[str] = field(default_factory=list)  # the stale tokens handed out
    proxy_checks: list[tuple[str, int]] = field(default_factory=list)  # (token, status) seen
    # EXT: user-info's eligibleAccelerators, [{variant: VARIANT_GPU, models: [...]}] (a free
    # account: T4 only); the extension tries these when assign answers 503
    eligible: dict[str, list[str]] = field(
        default_factory=lambda: {"VARIANT_GPU": ["T4"], "VARIANT_TPU": ["V5E1"]})
    tier: str = "SUBSCRIPTION_TIER_NONE"
    user_info_calls: int = 0
    restarted: list[str] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def reclaim(self, endpoint: str) -> None:
        """Take a runtime back, as Colab does server-side."""
        if self.assignments.pop(endpoint, None) is not None:
            self.reclaimed.append(endpoint)

    def open_in_browser(self, accelerator: str = "T4") -> str:
        """A runtime the user opened in Colab's web page (another notebook): CLI, it is listed
        with the rest, runtimeProxyInfo included."""
        endpoint = f"m-s-{accelerator.lower()}-browser-{next(self.counter)}"
        self.assignments[endpoint] = {
            "endpoint": endpoint, "accelerator": accelerator, "variant": "GPU",
            "nbh": secrets.token_hex(22), "since": self.now, "active_at": self.now}
        return endpoint

    def expire_proxy_tokens(self, endpoint: str) -> None:
        """Every proxy token of this runtime stops working now (expired or stale); the runtime
        runs on and the list mints fresh ones."""
        tokens = self.assignments[endpoint].setdefault("tokens", {})
        for token in tokens:
            tokens[token] = self.now

    def proxy_answer(self, token: str) -> tuple[dict[str, Any] | None, int]:
        """The runtime a live proxy token opens (None: refused) and the status the proxy gives."""
        live = next((a for a in self.assignments.values()
                     if self.now < a.get("tokens", {}).get(token, 0)), None)
        status = 200 if live is not None else self.proxy_refusal
        self.proxy_checks.append((token, status))
        return live, status

    def restart(self, endpoint: str) -> None:
        """Restart a runtime's VM: the assignment stays listed under the same endpoint, but its
        Jupyter server is a new one (protocol page: the worker and its tunnel URL are gone)."""
        item = self.assignments[endpoint]
        item["boots"] = item.get("boots", 0) + 1
        self.restarted.append(endpoint)

    def expire(self) -> None:
        """Reclaim what sat idle past `fit` or ran past the session cap (CLI: 7-15 min without
        a working keep-alive; protocol page: 12 h cap)."""
        for endpoint, item in list(self.assignments.items()):
            if self.now - item["active_at"] > self.fit or self.now - item["since"] > \
                    self.session_cap:
                self.reclaim(endpoint)


def create_colab_app(state: ColabState) -> Flask:
    """/tun/m/* as Google's clients see them, plus a proxied /runtime and its token check."""
    app = Flask("fake_colab")

    def xssi(body: dict[str, Any]) -> Response:
        return Response(XSSI + json.dumps(body), content_type="application/json")

    def proxy_info(item: dict[str, Any]) -> dict[str, Any]:
        # CLI: every assign and list answer mints a fresh proxy token
        # (an older token stays good until it expires)
        item["token"] = "proxy-" + secrets.token_urlsafe(8)
        item["expires_at"] = state.now + state.token_ttl
        stale = state.stale_tokens > 0
        state.stale_tokens -= stale
        state.stale += [item["token"]] if stale else []
        item.setdefault("tokens", {})[item["token"]] = 0 if stale else item["expires_at"]
        base = state.runtime_url or f"{request.host_url}runtime/{item['endpoint']}"
        return {"url": base, "token": item["token"], "tokenExpiresInSeconds": state.token_ttl}

    def public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in ("endpoint", "accelerator", "variant")}

    @app.before_request
    def check() -> Any:
        state.requests.append((request.method, request.full_path))
        if state.clock is not None:
            state.now = state.clock()
        state.expire()
        if request.path.startswith("/runtime/"):
            return None  # the runtime proxy takes its own token, not Google's
        if state.fail_next:
            status, raw = state.fail_next.pop(0)
            return Response(raw, status=status, content_type="application/json")
        if request.path == OLD_KEEPALIVE:  # CLI (June 2026): dropped, 403 for ordinary accounts
            body = {"error": {"code": 403, "status": "PERMISSION_DENIED",
                              "details": [{"reason": "USER_PROJECT_DENIED"}]}}
            return Response(json.dumps(body), status=403, content_type="application/json")
        if state.tokens is not None:
            state.tokens.check()
        # CLI and EXT send X-Colab-Client-Agent; the old X-Goog-Colab-Client-Agent is refused
        if request.headers.get("Accept") != "application/json" or not request.headers.get(
            "X-Colab-Client-Agent"
        ) or request.headers.get("X-Goog-Colab-Client-Agent"):
            abort(400)
        if request.args.get("authuser") != "0":  # CLI: authuser=0 on every request
            abort(400)
        return None

    @app.route("/tun/m/assign", methods=["GET", "POST"])
    def assign() -> Any:
        nbh, acc = request.args["nbh"], request.args["accelerator"]
        variant = request.args.get("variant", "DEFAULT")  # CLI: omitted for DEFAULT
        if len(nbh) != 44:
            abort(400)
        held = next((a for a in state.assignments.values() if a["nbh"] == nbh), None)
        if held is not None:  # CLI: the GET answers the held assignment, strings
            return xssi({**public(held), "runtimeProxyInfo": proxy_info(held)})
        if request.method == "GET":
            ticket = secrets.token_urlsafe(8)
            state.tickets.add(ticket)
            return xssi({"acc": acc, "nbh": nbh, "p": False, "token": ticket, "variant": variant})
        if request.headers.get("X-Goog-Colab-Token") not in state.tickets:
            abort(400)
        if state.outcome:  # EXT: an outcome, as its number, and no runtime
            return xssi({"outcome": OUTCOME_NUMBERS[state.outcome]})
        if acc in state.not_entitled:  # EXT: 400 with an accelerator: not entitled
            abort(400)
        if acc in state.unavailable:  # EXT: 503, then it tries other eligible accelerators
            abort(503)
        if len(state.assignments) >= state.max_assignments:
            abort(412)
        endpoint = f"gpu-{acc.lower()}-s-{next(state.counter)}"
        item = {"endpoint": endpoint, "accelerator": acc, "variant": variant, "nbh": nbh,
                "since": state.now, "active_at": state.now}
        state.assignments[endpoint] = item
        return xssi({**public(item), "variant": VARIANT_NUMBERS[variant], "machineShape": 0,
                     "fit": state.fit, "runtimeProxyInfo": proxy_info(item)})

    @app.get("/tun/m/assignments")
    def assignments() -> Any:
        listed = [{**public(a), "machineShape": "STANDARD"} | (
            {} if a["endpoint"] in state.listed_without_proxy else
            {"runtimeProxyInfo": proxy_info(a)}) for a in state.assignments.values()]
        return xssi({"assignments": listed})

    @app.route("/tun/m/unassign/<endpoint>", methods=["GET", "POST"])
    def unassign(endpoint: str) -> Any:
        if endpoint not in state.assignments:
            abort(404)
        if request.method == "GET":
            ticket = secrets.token_urlsafe(8)
            state.tickets.add(ticket)
            return xssi({"token": ticket})
        if request.headers.get("X-Goog-Colab-Token") not in state.tickets:
            abort(400)
        del state.assignments[endpoint]
        return Response(status=204)  # CLI: the POST answers 204 / empty

    @app.get("/tun/m/<endpoint>/keep-alive/")
    def keepalive(endpoint: str) -> Any:
        if request.headers.get("X-Colab-Tunnel") != "Google":  # CLI: without it, 400
            abort(400)
        item = state.assignments.get(endpoint)
        if item is None:
            abort(404)
        if state.keepalive_refusal:
            abort(state.keepalive_refusal)
        item["active_at"] = state.now
        state.keepalives.append(endpoint)
        return Response(status=200)

    @app.get("/v1/user-info")
    def user_info() -> Any:
        # EXT (colab-vscode UserInfoSchema, read on colab.pa.googleapis.com): the tier, and the
        # eligible accelerators by variant; its enums are strict, so only known names here
        state.user_info_calls += 1
        groups = [{"variant": v, "models": list(m)} for v, m in state.eligible.items()]
        return {"subscriptionTier": state.tier, "paidComputeUnitsBalance": 0,
                "eligibleAccelerators": groups}

    def refused(status: int) -> Response:
        return Response(status=status)  # CLI (contents.py): an empty body, no JSON

    def proxied(endpoint: str) -> dict[str, Any]:
        item = state.assignments.get(endpoint)
        if item is None:  # CLI: a gone runtime gets the same empty 404 as an expired token
            abort(refused(404))
        header = request.headers.get(PROXY_TOKEN_HEADER, "")
        # EXT: X-Colab-Client-Agent required with the token header; CLI (contents.py): REST
        # takes the token as the query parameter alone
        if header and not request.headers.get("X-Colab-Client-Agent"):
            abort(400)
        live, status = state.proxy_answer(header or request.args.get(PROXY_TOKEN_QUERY, ""))
        if live is not item:
            abort(refused(status if live is None else 404))
        return item

    @app.get("/runtime/<endpoint>/api")
    def runtime_api(endpoint: str) -> Any:
        proxied(endpoint)
        return {"version": "2.21.1"}

    @app.get("/runtime/<endpoint>/api/status")
    def runtime_status(endpoint: str) -> Any:
        # jupyter_server's /api/status: `started` is when this server started (a restart of the
        # VM starts a new one), plus its activity
        item = proxied(endpoint)
        started = f"2026-11-30T{item.get('boots', 0):02d}:00:00.000000Z"
        return {"started": started, "last_activity": started, "connections": 0, "kernels": 1}

    @app.route("/runtime/<endpoint>/api/<path:rest>", methods=["GET", "POST", "PUT", "DELETE"])
    def runtime_elsewhere(endpoint: str, rest: str) -> Any:
        """Any other Jupyter path: past the token check, Jupyter's own JSON 404."""
        proxied(endpoint)
        return {"message": f"Not found: /api/{rest}", "reason": None}, 404

    @app.get("/runtime/check")
    def runtime_check() -> Any:
        """For a runtime standing in behind this proxy: is this proxy token live?"""
        if state.booting > 0:  # CLI: a fresh VM answers 502 for a while
            state.booting -= 1
            abort(502)
        live, status = state.proxy_answer(request.headers.get(PROXY_TOKEN_HEADER, ""))
        if live is None:
            return refused(status)
        live["active_at"] = state.now  # traffic through the proxy counts as activity
        return {"live": True}

    return app

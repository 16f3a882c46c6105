"""Loopback stand-ins for Google's OAuth token endpoint, Colab's control plane and Drive uploads."""

from __future__ import annotations

import base64
import email
import hashlib
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, redirect, request
from werkzeug.serving import BaseWSGIServer, make_server

XSSI = ")]}'\n"


class LoopbackServer:
    """A WSGI app served on 127.0.0.1 on a free port, in a thread."""

    def __init__(self, app: Flask) -> None:
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._thread.is_alive():  # stopped already (a test took it away)
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Tokens:
    """Access tokens the OAuth stand-in issued; the others accept only these."""

    access: set[str] = field(default_factory=set)

    def check(self) -> None:
        """Abort 401 unless the request carries a live bearer token."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.access:
            abort(401)


@dataclass
class OAuthState:
    """What the OAuth stand-in knows: the client, issued codes and refresh tokens."""

    client_id: str = "client-123.apps.example"
    client_secret: str = "s3cret"
    tokens: Tokens = field(default_factory=Tokens)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    granted_scope: str | None = None  # None grants what was asked
    expires_in: int = 3600
    token_requests: list[dict[str, str]] = field(default_factory=list)


def create_oauth_app(state: OAuthState) -> Flask:
    """/auth consents at once and redirects with a code; /token exchanges and refreshes."""
    app = Flask("fake_oauth")

    @app.get("/auth")
    def auth() -> Any:
        args = request.args
        if args.get("client_id") != state.client_id or args.get("response_type") != "code":
            abort(400)
        code = secrets.token_urlsafe(8)
        state.codes[code] = {
            "challenge": args.get("code_challenge", ""),
            "redirect_uri": args["redirect_uri"],
            "scope": args.get("scope", ""),
        }
        query = urlencode({"code": code, "state": args.get("state", "")})
        return redirect(f"{args['redirect_uri']}?{query}")

    @app.post("/token")
    def token() -> Any:
        form = request.form.to_dict()
        state.token_requests.append(form)
        basic = request.authorization  # RFC 6749 2.3.1: HTTP Basic or form fields
        client = (
            (basic.username, basic.password)
            if basic
            else (form.get("client_id"), form.get("client_secret"))
        )
        if client != (state.client_id, state.client_secret):
            return {"error": "invalid_client"}, 401
        if form.get("grant_type") == "authorization_code":
            grant = state.codes.pop(form.get("code", ""), None)
            if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                return {"error": "invalid_grant"}, 400
            verifier = form.get("code_verifier", "").encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest())
            if grant["challenge"] and digest.decode().rstrip("=") != grant["challenge"]:
                return {"error": "invalid_grant", "error_description": "PKCE mismatch"}, 400
            refresh = secrets.token_urlsafe(12)
            state.refresh_tokens.add(refresh)
            scope = state.granted_scope if state.granted_scope is not None else grant["scope"]
            return _issue(state, scope, refresh)
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in state.refresh_tokens:
                return {"error": "invalid_grant", "error_description": "Token revoked"}, 400
            return _issue(state, state.granted_scope or "", None)
        return {"error": "unsupported_grant_type"}, 400

    return app


def _issue(state: OAuthState, scope: str, refresh: str | None) -> dict[str, Any]:
    access = "ya29." + secrets.token_urlsafe(12)
    state.tokens.access.add(access)
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": state.expires_in,
    }
    if scope:
        body["scope"] = scope
    if refresh:
        body["refresh_token"] = refresh
    return body


@dataclass
class ColabState:
    """The control plane's view: assignments, tickets, keep-alives and a clock tests move."""

    tokens: Tokens | None = None  # None: accept any bearer (or none)
    max_assignments: int = 2
    token_ttl: int = 3600
    runtime_url: str | None = None  # proxy URL handed out; default: this server's /runtime/
    now: float = 1_000_000.0
    assignments: dict[str, dict[str, Any]] = field(default_factory=dict)
    tickets: set[str] = field(default_factory=set)
    keepalives: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: list[tuple[int, str]] = field(default_factory=list)  # (status, raw body)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def create_colab_app(state: ColabState) -> Flask:
    """The documented shapes of /tun/m/* and KeepAliveAssignment, plus a proxied /runtime."""
    app = Flask("fake_colab")

    def xssi(body: dict[str, Any]) -> Response:
        return Response(XSSI + json.dumps(body), content_type="application/json")

    def proxy_info(item: dict[str, Any], *, fresh: bool = True) -> dict[str, Any]:
        if fresh or state.now >= item["expires_at"]:
            item["token"] = "proxy-" + secrets.token_urlsafe(8)
            item["expires_at"] = state.now + state.token_ttl
        base = state.runtime_url or f"{request.host_url}runtime/{item['endpoint']}"
        left = int(item["expires_at"] - state.now)
        return {"url": base, "token": item["token"], "tokenExpiresInSeconds": left}

    def public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in ("endpoint", "accelerator", "variant")}

    @app.before_request
    def check() -> Any:
        state.requests.append((request.method, request.full_path))
        if state.fail_next:
            status, raw = state.fail_next.pop(0)
            return Response(raw, status=status, content_type="application/json")
        if state.tokens is not None and not request.path.startswith("/runtime/"):
            state.tokens.check()  # the runtime proxy takes its own token, not Google's
        if request.path.startswith(("/tun/m/", "/$rpc/")) and (
            request.headers.get("Accept") != "application/json"
            or not request.headers.get("X-Goog-Colab-Client-Agent")
        ):
            abort(400)
        if request.path.startswith("/tun/m/") and request.args.get("authuser") != "0":
            abort(400)
        return None

    @app.route("/tun/m/assign", methods=["GET", "POST"])
    def assign() -> Any:
        nbh, variant, acc = (request.args[k] for k in ("nbh", "variant", "accelerator"))
        if len(nbh) != 44:
            abort(400)
        held = next((a for a in state.assignments.values() if a["nbh"] == nbh), None)
        if held is not None:
            return xssi({"endpoint": held["endpoint"], "runtimeProxyInfo": proxy_info(held)})
        if request.method == "GET":
            ticket = secrets.token_urlsafe(8)
            state.tickets.add(ticket)
            return xssi({"acc": acc, "nbh": nbh, "token": ticket, "variant": variant})
        if request.headers.get("X-Goog-Colab-Token") not in state.tickets:
            abort(400)
        if len(state.assignments) >= state.max_assignments:
            abort(412)
        endpoint = f"gpu-{acc.lower()}-s-{next(state.counter)}"
        item = {"endpoint": endpoint, "accelerator": acc, "variant": variant, "nbh": nbh}
        state.assignments[endpoint] = item
        return xssi({**public(item), "runtimeProxyInfo": proxy_info(item)})

    @app.get("/tun/m/assignments")
    def assignments() -> Any:
        return xssi(
            {
                "assignments": [
                    {
                        **public(a),
                        "machineShape": "STANDARD",
                        "runtimeProxyInfo": proxy_info(a, fresh=False),
                    }
                    for a in state.assignments.values()
                ]
            }
        )

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
        return xssi({})

    @app.post("/$rpc/google.internal.colab.v1.RuntimeService/KeepAliveAssignment")
    def keepalive() -> Any:
        if request.content_type != "application/json+protobuf":
            abort(400)
        (endpoint,) = json.loads(request.get_data())
        if endpoint not in state.assignments:
            abort(404)
        state.keepalives.append(endpoint)
        return Response("[]", content_type="application/json+protobuf")

    @app.get("/runtime/<endpoint>/api")
    def runtime_api(endpoint: str) -> Any:
        item = state.assignments.get(endpoint)
        if item is None:
            abort(404)
        token = request.headers.get("X-Colab-Runtime-Proxy-Token")
        if token != item["token"] or state.now >= item["expires_at"]:
            abort(401)
        return {"version": "2.21.1"}

    @app.get("/runtime/check")
    def runtime_check() -> Any:
        """For a runtime standing in behind this proxy: is this proxy token live?"""
        token = request.headers.get("X-Colab-Runtime-Proxy-Token")
        live = any(
            a.get("token") == token and state.now < a["expires_at"]
            for a in state.assignments.values()
        )
        return ({"live": True}, 200) if live else abort(401)

    return app


@dataclass
class DriveState:
    """Files uploaded to the Drive stand-in, by id."""

    tokens: Tokens = field(default_factory=Tokens)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: list[int] = field(default_factory=list)


def create_drive_app(state: DriveState) -> Flask:
    """A multipart upload to /upload/drive/v3/files, as google-api-python-client sends it."""
    app = Flask("fake_drive")

    @app.post("/upload/drive/v3/files")
    def upload() -> Any:
        if state.fail_next:
            status = state.fail_next.pop(0)
            return {"error": {"code": status, "message": "stand-in failure"}}, status
        state.tokens.check()
        if request.args.get("uploadType") != "multipart":
            abort(400)
        head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
        message = email.message_from_bytes(head + request.get_data())
        meta_part, media_part = message.get_payload()
        metadata = json.loads(meta_part.get_payload())
        file_id = "file-" + secrets.token_urlsafe(6)
        state.files[file_id] = {
            "metadata": metadata,
            "media_type": media_part.get_content_type(),
            "content": media_part.get_payload(decode=True),
            "fields": request.args.get("fields"),
        }
        return {"id": file_id, "name": metadata.get("name"), "mimeType": metadata.get("mimeType")}

    return app

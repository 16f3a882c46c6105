"""Loopback stand-ins for Google's OAuth endpoints and Drive uploads (Colab: fake_colab.py).

OAuth rules are read from google-auth-oauthlib's installed-app flow (InstalledAppFlow), Google's
OAuth help pages and the Colab CLI's issue threads (googlecolab/google-colab-cli), as
colab-protocol.md summarises them.
"""

from __future__ import annotations

import base64
import email
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Flask, abort, redirect, request
from werkzeug.serving import BaseWSGIServer, make_server


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
    grants: dict[str, str] = field(default_factory=dict)  # refresh token -> granted scopes
    granted_scope: str | None = None  # None grants what was asked (a user may untick scopes)
    client_type: str = "installed"  # "installed" (Desktop app) or "web"
    redirect_uris: tuple[str, ...] = ()  # a web client's registered redirect URIs
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
        if not _redirect_allowed(state, args.get("redirect_uri", "")):
            return {"error": "redirect_uri_mismatch"}, 400  # Google's error page, in short
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
            state.grants[refresh] = scope
            return _issue(state, scope, refresh)
        if form.get("grant_type") == "refresh_token":
            refresh = form.get("refresh_token", "")
            if refresh not in state.refresh_tokens:  # revoked, or a test user's 7 days are over
                return {"error": "invalid_grant",
                        "error_description": "Token has been expired or revoked."}, 400
            granted = state.grants.get(refresh)
            asked = set(form.get("scope", "").split())
            if granted is not None and not asked <= set(granted.split()):
                # asking on refresh for a scope the user refused (Colab CLI issue: hourly loop)
                return {"error": "invalid_scope",
                        "error_description": "Bad Request"}, 400
            return _issue(state, granted or state.granted_scope or "", None)
        return {"error": "unsupported_grant_type"}, 400

    return app


def _redirect_allowed(state: OAuthState, uri: str) -> bool:
    """A Desktop-app client takes any loopback port; a web client only a registered URI."""
    if state.client_type == "web":
        return uri in state.redirect_uris
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")


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

"""A hostile page in the operator's browser against a live service: DNS rebinding, cross-site posts.

Each request is the one a browser would send for that page (a rebinding domain's Host; a
``fetch`` or form ``text/plain`` POST, which needs no CORS preflight)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
from flask import Flask

from tests.support.app import LiveServer

ATTACKER = {"username": "mallory", "email": "m@example.org", "password": "longenough"}


def _first_user_is(http: httpx.Client, username: str) -> None:
    """The operator registers; the account must be the first one (admin), not mallory's."""
    answer = http.post("/api/auth/register",
                       json={"username": username, "email": "o@example.org",
                             "password": "longenough"})
    assert answer.status_code == 201, answer.text
    login = http.post("/api/auth/login", json={"username": username, "password": "longenough"})
    token = login.json()["access_token"]
    me = http.get("/api/v1/auth/session", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["role"] == "admin"
    assert http.post("/api/auth/login", json={"username": "mallory",
                                              "password": "longenough"}).status_code == 401


def test_rebinding_host_is_refused(live_server: LiveServer, http: httpx.Client) -> None:
    port = live_server.url.rsplit(":", 1)[1]
    rebound = {"Host": f"rebind.attacker.example:{port}"}
    health = http.get("/healthz", headers=rebound)
    assert health.status_code == 403
    assert health.json()["error"]["code"] == "FORBIDDEN"
    assert "BRIDGE_ALLOWED_HOSTS" in health.json()["error"]["message"]
    register = http.post("/api/auth/register", json=ATTACKER, headers=rebound)
    assert register.status_code == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"app.localhost:{port}"):
        assert http.get("/healthz", headers={"Host": host}).status_code == 200, host
    _first_user_is(http, "operator")


def test_configured_public_name_is_served(make_app: Callable[..., Flask], home: Path) -> None:
    app = make_app({"home": home, "allowed_hosts": "bridge.example.org"})
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz", headers={"Host": "bridge.example.org"}).status_code == 200
        assert http.get("/healthz", headers={"Host": "other.example.org"}).status_code == 403


def test_cross_site_simple_post_cannot_register_first_admin(http: httpx.Client) -> None:
    body = json.dumps(ATTACKER)
    # fetch(url, {method: "POST", mode: "no-cors", body}) from https://evil.example
    no_cors = http.post("/api/auth/register", content=body, headers={
        "Content-Type": "text/plain;charset=UTF-8", "Origin": "https://evil.example",
        "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"})
    assert no_cors.status_code == 403, no_cors.text
    assert no_cors.json()["error"]["details"]["reason"] == "cross_site"
    # A browser that sends only Sec-Fetch-Site, and one (old) that sends neither header
    fetch_site = http.post("/api/auth/register", json=ATTACKER,
                           headers={"Sec-Fetch-Site": "cross-site"})
    assert fetch_site.status_code == 403
    plain = http.post("/api/auth/register", content=body,
                      headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert plain.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    form = http.post("/api/auth/register", content=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    # A page that sandboxes itself sends Origin: null
    sandboxed = http.post("/api/auth/register", json=ATTACKER, headers={"Origin": "null"})
    assert sandboxed.status_code == 403
    _first_user_is(http, "operator")


def test_same_origin_and_configured_origins_still_work(
    make_app: Callable[..., Flask], home: Path
) -> None:
    app = make_app({"home": home, "cors_origins": "https://notebook.example.org"})
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as http:
        user = {"username": "user1", "email": "u1@example.org", "password": "longenough"}
        allowed = http.post("/api/auth/register", json=user, headers={
            "Origin": "https://notebook.example.org", "Sec-Fetch-Site": "cross-site"})
        assert allowed.status_code == 201, allowed.text
        second = {**user, "username": "user2", "email": "u2@example.org"}
        same = http.post("/api/auth/register", json=second,
                         headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"})
        assert same.status_code == 201, same.text

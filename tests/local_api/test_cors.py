"""CORS preflights let through the headers a browser client asks for, for allowed origins only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask

ALLOWED = "http://127.0.0.1:8123"
REQUESTED = "x-stainless-os, x-stainless-lang, authorization, content-type"


def preflight(app: Flask, origin: str, requested: str = REQUESTED) -> dict[str, str]:
    response = app.test_client().options("/api/v1/chat/completion", headers={
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": requested,
    })
    assert response.status_code == 200
    return dict(response.headers)


def test_a_preflight_allows_the_requested_headers_for_an_allowed_origin_only(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = make_app({"home": tmp_path / "home", "cors_origins": ALLOWED})

    allowed = preflight(app, ALLOWED)
    assert allowed["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in allowed["Access-Control-Allow-Methods"]
    granted = {h.strip().lower() for h in allowed["Access-Control-Allow-Headers"].split(",")}
    assert granted >= {"x-stainless-os", "x-stainless-lang", "authorization", "content-type"}
    assert "Access-Control-Request-Headers" in allowed["Vary"]

    refused = preflight(app, "http://127.0.0.1:8124")  # another port: another origin
    assert "Access-Control-Allow-Origin" not in refused
    assert "Access-Control-Allow-Headers" not in refused
    assert "Access-Control-Allow-Methods" not in refused

    # Names that are not HTTP tokens are never echoed: the fixed list answers instead.
    odd = preflight(app, ALLOWED, "x-ok, bad header\x7f")
    assert "bad header" not in odd["Access-Control-Allow-Headers"]
    assert "Authorization" in odd["Access-Control-Allow-Headers"]

"""Bodies and URLs from an attacker against a live service: over-long chunked bodies, passwords
in URLs that the parser splits (``#``, ``/``, ``?``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

ACCOUNT = {"username": "bobby", "email": "b@example.org", "password": "longenough"}


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body without Content-Length: httpx sends it ``Transfer-Encoding: chunked``."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def test_chunked_body_over_the_limit_is_413_and_not_applied(http: httpx.Client) -> None:
    # Valid JSON followed by padding: cut at the 4 MiB limit it would still parse.
    body = json.dumps(ACCOUNT).encode() + b" " * (5 * 1024 * 1024)
    answer = http.post("/api/auth/register", content=chunks(body),
                       headers={"Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    login = http.post("/api/auth/login", json={"username": "bobby", "password": "longenough"})
    assert login.status_code == 401  # nothing was applied
    small = http.post("/api/auth/register", content=chunks(json.dumps(ACCOUNT).encode()),
                      headers={"Content-Type": "application/json"})
    assert small.status_code == 201, small.text  # a chunked body under the limit still works


SECRET = "s3cr3t"


@pytest.mark.parametrize("separator", ["#", "/", "?"])
@pytest.mark.parametrize("field", ["worker_url", "runtime_url", "download"])
def test_no_error_quotes_a_url_password(http: httpx.Client, access_token: str,
                                        separator: str, field: str) -> None:
    """alice registered first, so she is admin and may connect workers."""
    password = f"{SECRET}{separator}zq{SECRET}"  # "zq": never in a hex request id ("99" was)
    url = f"http://user:{password}@example.org:8080/"
    bearer = {"Authorization": f"Bearer {access_token}"}
    if field == "download":
        answer = http.post("/api/v1/models/download", headers=bearer,
                           json={"model_id": "stolen", "url": url})
    else:
        body = {field: url}
        if field == "worker_url":
            body["worker_secret"] = "w" * 32
        else:
            body["token"] = "t"
        answer = http.post("/api/v1/system/colab/connect", headers=bearer, json=body)
    assert answer.status_code == 400, answer.text
    text = answer.text
    for part in (SECRET, f"zq{SECRET}", "zq", password):
        assert part not in text, (part, text)
    assert "percent-encoded" in answer.json()["error"]["message"]

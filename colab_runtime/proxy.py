"""Colab's runtime proxy (the tunnel front end before a runtime's Jupyter server): the headers it
wants and how it refuses a token (colab-protocol.md, "The runtime itself").

Read from Google's clients: every request carries ``X-Colab-Runtime-Proxy-Token`` and
``X-Colab-Client-Agent`` (the VS Code extension, googlecolab/colab-vscode, calls both required
for the kernel websocket); REST also takes the token as the ``colab-runtime-proxy-token`` query
parameter (the Colab CLI's ``contents.py`` sends only that). An expired or stale token is
answered with an **empty 404**, sometimes a 401 (the CLI's ``contents.py``, PRs #123 and #136,
issue #106): the same answer as a runtime that is gone. So a refusal is never read as a dead
runtime: renew the token from the assignment list, then decide.
"""

from __future__ import annotations

from bridge.errors import BackendUnavailable

PROXY_TOKEN_HEADER = "X-Colab-Runtime-Proxy-Token"
PROXY_TOKEN_QUERY = "colab-runtime-proxy-token"
CLIENT_AGENT_HEADER, CLIENT_AGENT = "X-Colab-Client-Agent", "compute-bridge"


class ProxyTokenRefused(BackendUnavailable):
    """The runtime proxy refused the proxy token (401, or 404 with an empty body): renew it from
    the assignment list, then decide (``details``: ``reason`` proxy_token, ``upstream_status``)."""


def proxy_headers(token: str) -> dict[str, str]:
    """The headers of every request through the runtime proxy."""
    return {PROXY_TOKEN_HEADER: token, CLIENT_AGENT_HEADER: CLIENT_AGENT}


def is_refusal(status: int | None, body: bytes | str | None) -> bool:
    """Whether a proxy answer is the token's refusal: a 401, or a 404 with an empty body (a
    Jupyter server's own 404 carries a JSON body: the CLI's ``contents.py`` tells them apart so)."""
    return status == 401 or (status == 404 and not (body or "").strip())


def refusal(status: int | None, what: str) -> ProxyTokenRefused:
    """The error for a refused token on ``what`` (no token in the message)."""
    return ProxyTokenRefused(
        f"the Colab runtime proxy refused its token on {what} ({status}): expired or stale",
        details={"reason": "proxy_token", "upstream_status": status})

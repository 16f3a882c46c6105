"""A jupyter_server identity provider that lets a Jupyter server stand in for Colab's runtime proxy.

Besides its own token it accepts ``X-Colab-Runtime-Proxy-Token`` (or the websocket's
``colab-runtime-proxy-token`` query), asking the control-plane stand-in whose URL is in the
file named by ``COLAB_STANDIN_FILE`` whether that proxy token is live. As the real proxy, it
wants ``X-Colab-Client-Agent`` on every proxied request, REST and websocket (the VS Code
extension, googlecolab/colab-vscode, calls it required), and answers 502 while the stand-in
says the VM is booting (Google's CLI retries the kernel start on that).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import requests
from jupyter_server.auth.identity import IdentityProvider
from tornado import web

HEADER, QUERY = "X-Colab-Runtime-Proxy-Token", "colab-runtime-proxy-token"


def _live(proxy_token: str) -> bool:
    where = Path(os.environ.get("COLAB_STANDIN_FILE", "/nonexistent"))
    if not where.is_file():
        return False
    answer = requests.get(where.read_text().strip() + "/runtime/check",
                          headers={HEADER: proxy_token}, timeout=5)
    if answer.status_code == 502:
        raise web.HTTPError(502, "the runtime is booting")
    return answer.status_code == 200


class ColabProxyIdentity(IdentityProvider):  # type: ignore[misc]
    """Token auth, plus a live Colab proxy token counting as the token."""

    def get_token(self, handler: Any) -> str | None:
        proxy = handler.request.headers.get(HEADER) or handler.get_argument(QUERY, "")
        if proxy:
            if not handler.request.headers.get("X-Colab-Client-Agent"):
                return ""
            return str(self.token) if _live(proxy) else ""
        return super().get_token(handler)  # type: ignore[no-any-return]

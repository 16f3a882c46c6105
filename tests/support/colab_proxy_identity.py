"""A jupyter_server identity provider that lets a Jupyter server stand in for Colab's runtime proxy.

Besides its own token it accepts a Colab proxy token, asking the control-plane stand-in whose URL
is in the file named by ``COLAB_STANDIN_FILE`` whether that token is live. As the real proxy:

- the token comes as ``X-Colab-Runtime-Proxy-Token`` or as the ``colab-runtime-proxy-token``
  query parameter (the websocket's; the Colab CLI's ``contents.py`` sends only the query
  parameter, without any other header, to the Contents API);
- ``X-Colab-Client-Agent`` is wanted on every other proxied request, REST and websocket (the
  VS Code extension, googlecolab/colab-vscode, calls it required);
- an expired or stale token is answered with an **empty 404** (or the 401 the stand-in is set
  to), the answer a gone runtime gets too (the CLI's ``contents.py``, PRs #123 and #136);
- while the stand-in says the VM is booting, 502 (Google's CLI retries the kernel start).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import requests
from jupyter_server.auth.identity import IdentityProvider
from tornado import web

HEADER, QUERY = "X-Colab-Runtime-Proxy-Token", "colab-runtime-proxy-token"


def _check(proxy_token: str) -> int:
    """The stand-in's verdict on a proxy token: 200 live, 502 booting, else the refusal."""
    where = Path(os.environ.get("COLAB_STANDIN_FILE", "/nonexistent"))
    if not where.is_file():
        return 404
    answer = requests.get(where.read_text().strip() + "/runtime/check",
                          headers={HEADER: proxy_token}, timeout=5)
    return answer.status_code


class ColabProxyIdentity(IdentityProvider):  # type: ignore[misc]
    """Token auth, plus a live Colab proxy token counting as the token."""

    def get_token(self, handler: Any) -> str | None:
        header, query = handler.request.headers.get(HEADER), handler.get_argument(QUERY, "")
        if not (header or query):
            return super().get_token(handler)  # type: ignore[no-any-return]
        query_alone = not header and handler.request.path.startswith("/api/contents")
        if not query_alone and not handler.request.headers.get("X-Colab-Client-Agent"):
            return ""
        status = _check(header or query)
        if status == 200:
            return str(self.token)
        if status == 502:
            raise web.HTTPError(502, "the runtime is booting")
        handler.set_status(status)  # the front end's answer: no body at all
        raise web.Finish()

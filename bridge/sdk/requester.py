"""What the SDK's resources need of ``bridge.Client``, as a protocol.

The resources (``bridge.sdk.resources``) take any object of this shape rather than importing the
client, so the client can import the resources without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from bridge.sdk.stream import ChatStream


class Requester(Protocol):
    """What a resource needs of ``bridge.Client``: requests, streams and the stored tokens."""

    refresh_token: str | None

    def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        timeout: float | None = None,
    ) -> Any: ...

    def open_stream(self, path: str, body: dict[str, Any],
                    final: Callable[[dict[str, Any]], Any]) -> ChatStream: ...

    def _login(self, username: str, password: str) -> dict[str, Any]: ...

    def _store(self, answer: dict[str, Any]) -> None: ...

    def _forget(self) -> None: ...

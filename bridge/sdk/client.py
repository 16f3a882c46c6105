"""The Python SDK: ``bridge.Client``, a sync httpx client for the service's API.

    client = Client("http://127.0.0.1:5000", username="alice", password="correct horse")
    print(client.chat.completion(prompt="Hello!").completion)

Where and who, when not given: ``$BRIDGE_URL`` and ``$BRIDGE_API_KEY``, else the login
`bridge login` stored (bridge.sdk.credentials), else ``http://127.0.0.1:5000``.
Credentials: an API key (``api_key=``, ``$BRIDGE_API_KEY``, the stored login), or a
username and password (logged in on first use; the access token is refreshed, or the login
redone, when the service answers 401). Resources: ``auth``, ``user``, ``models``, ``chat``,
``embeddings``, ``tokens``, ``conversations``, ``system``, ``colab``, ``db``, ``admin``;
``generate`` is FT's shape.

Every failure raises one tree, the service's own (``bridge.errors``), keyed by the
envelope's ``code``::

    BridgeError
    ├── ValidationError, Unauthorized, Forbidden, Conflict, PayloadTooLarge, ...
    ├── NotFound ── ModelNotFound
    ├── RateLimitExceeded (.retry_after, seconds)
    ├── DownloadFailed (.details["error_type"]), BackendUnavailable
    └── ServiceUnreachable (cannot connect, timed out, or cut mid-stream)

``transport=`` takes any httpx transport: tests pass ``httpx.WSGITransport(app=app)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, overload

import httpx

from bridge.errors import BridgeError, ServiceUnreachable, Unauthorized
from bridge.sdk.chat import Chat, finish, native_body
from bridge.sdk.embeddings import Embeddings
from bridge.sdk.resources import (
    Admin,
    Auth,
    Colab,
    Conversations,
    Database,
    Models,
    System,
    User,
)
from bridge.sdk.stream import ChatStream, error_from_response
from bridge.sdk.tokens import Tokens
from bridge.sdk.types import Generation

USER_AGENT = "compute-bridge-sdk/0.1"
_SUFFIXES = ("/api/v1", "/api", "/v1")


def normalize_base_url(url: str) -> str:
    """The service root: accepts AQ's ``.../api/v1``, FT's ``.../api`` and ``.../v1`` too."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https:// (got {url!r})")
    for suffix in _SUFFIXES:
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


class Client:
    """A connection to one Compute Bridge service; thread-safe, close it (or use ``with``)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        timeout: float | None = 120.0,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        from bridge.config import DEFAULT_SERVICE_URL, ClientSettings
        from bridge.sdk.credentials import stored_login

        defaults = ClientSettings.from_env()
        from_env = defaults.url if defaults.url != DEFAULT_SERVICE_URL else None
        url = normalize_base_url(base_url) if base_url else from_env and normalize_base_url(
            from_env)
        stored_url, stored_key = stored_login(url)
        self.base_url = normalize_base_url(url or stored_url or DEFAULT_SERVICE_URL)
        if api_key is None and username is None and access_token is None:
            api_key = defaults.api_key or stored_key or None
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.api_key = api_key
        self.username, self._password = username, password
        self.access_token, self.refresh_token = access_token, refresh_token
        self._lock = threading.RLock()
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout or 10.0)),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
        )
        self.auth = Auth(self)
        self.user = User(self)
        self.models = Models(self)
        self.chat = Chat(self)
        self.embeddings = Embeddings(self)
        self.tokens = Tokens(self)
        self.conversations = Conversations(self)
        self.system = System(self)
        self.colab = Colab(self)
        self.db = Database(self)
        self.admin = Admin(self)

    def __repr__(self) -> str:
        who = "api key" if self.api_key else (self.username or "anonymous")
        return f"Client({self.base_url!r}, {who})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (tokens are kept: a closed client is not logged out)."""
        self._http.close()

    # -- FT's generate ---------------------------------------------------------------------

    @overload
    def generate(self, prompt: str | None = None, model: str | None = None, *,
                 parameters: dict[str, Any] | None = None, conversation_id: str | None = None,
                 stream: Literal[False] = False, **params: Any) -> Generation: ...

    @overload
    def generate(self, prompt: str | None = None, model: str | None = None, *,
                 parameters: dict[str, Any] | None = None, conversation_id: str | None = None,
                 stream: Literal[True], **params: Any) -> ChatStream: ...

    def generate(
        self,
        prompt: str | None = None,
        model: str | None = None,
        *,
        parameters: dict[str, Any] | None = None,
        conversation_id: str | None = None,
        stream: bool = False,
        response_format: Any = None,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        tool_results: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> Generation | ChatStream:
        """FT's ``POST /generate``: a ``Generation`` (``.response``, ``.parsed``,
        ``.tool_calls``), or a ChatStream. The structured-output and tool options are
        ``client.chat.completion``'s."""
        body = native_body(prompt, ("model", model), parameters=parameters, params=params,
                           conversation_id=conversation_id, tool_results=tool_results,
                           response_format=response_format, tools=tools,
                           tool_choice=tool_choice,
                           parallel_tool_calls=parallel_tool_calls)  # fmt: skip
        if stream:
            return self.open_stream("/api/v1/generate", body,
                                    lambda event: finish(Generation(event), response_format))
        return finish(Generation(self.request("POST", "/api/v1/generate", json=body)),
                      response_format)  # fmt: skip

    # -- transport -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """One call to the API: the decoded JSON answer, or the typed error it carried."""
        response = self._send(method, path, json=json, params=params, auth=auth,
                              timeout=timeout, stream=False)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise BridgeError(
                f"the service at {self.base_url} answered {path} with something that is not "
                "JSON; is base_url the Compute Bridge service?",
                details={"url": self.base_url, "path": path},
            ) from None

    def open_stream(self, path: str, body: dict[str, Any],
                    final: Callable[[dict[str, Any]], Any]) -> ChatStream:
        """POST ``body`` with ``stream: true``; the NDJSON answer as a ChatStream of tokens."""
        response = self._send("POST", path, json={**body, "stream": True}, params=None,
                              auth=True, timeout=None, stream=True)
        return ChatStream(response, self.base_url, final)

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None,
        params: dict[str, Any] | None,
        auth: bool,
        timeout: float | None,
        stream: bool,
    ) -> httpx.Response:
        if params is not None:
            params = {k: v for k, v in params.items() if v is not None}
        renewed = False
        while True:
            token = self._bearer() if auth else None
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            request = self._http.build_request(
                method, path, json=json, params=params, headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TimeoutException as exc:
                raise ServiceUnreachable(
                    f"the service at {self.base_url} did not answer in time ({type(exc).__name__})",
                    details={"url": self.base_url},
                ) from None
            except httpx.TransportError as exc:
                raise unreachable(self.base_url, exc) from None
            if response.status_code == 401 and token and not renewed and token != self.api_key:
                response.close()
                self._renew(token)
                renewed = True
                continue
            if response.is_error:
                response.read()
                response.close()
                raise error_from_response(response, self.base_url)
            return response

    # -- credentials -----------------------------------------------------------------------

    def _bearer(self) -> str | None:
        """The token to send: the API key, the access token, or a fresh login's."""
        if self.api_key:
            return self.api_key
        with self._lock:
            if self.access_token is None and self.username and self._password:
                self._login_locked(self.username, self._password)
            return self.access_token

    def _renew(self, used: str) -> None:
        """After a 401 on ``used``: refresh the token pair once, else log in again."""
        with self._lock:
            if self.access_token != used and self.access_token is not None:
                return  # another thread renewed it already
            self.access_token = None
            if self.refresh_token:
                try:
                    self._store(self._post_unauthenticated(
                        "/api/v1/auth/refresh", {"refresh_token": self.refresh_token}))
                    return
                except Unauthorized:
                    self.refresh_token = None
            if self.username and self._password:
                self._login_locked(self.username, self._password)
                return
        raise Unauthorized("the access token expired or was revoked, and this client holds no "
                           "refresh token or password to renew it; log in again")

    def _login_locked(self, username: str, password: str) -> dict[str, Any]:
        answer = self._post_unauthenticated(
            "/api/v1/auth/login", {"username": username, "password": password})
        self._store(answer)
        return answer

    def _login(self, username: str, password: str) -> dict[str, Any]:
        """Log in with a password; later calls use (and renew) the tokens."""
        with self._lock:
            answer = self._login_locked(username, password)
            self.api_key = None
            self.username, self._password = username, password
            return answer

    def _forget(self) -> None:
        """Drop tokens and password (after logout): later calls go unauthenticated."""
        with self._lock:
            self.access_token = self.refresh_token = None
            self.username = self._password = None

    def _store(self, answer: dict[str, Any]) -> None:
        self.access_token = str(answer["access_token"])
        self.refresh_token = str(answer.get("refresh_token") or self.refresh_token or "") or None

    def _post_unauthenticated(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.request("POST", path, json=body, auth=False)
        return dict(answer)


def unreachable(base_url: str, exc: BaseException) -> ServiceUnreachable:
    """The one message for a service that cannot be reached: where, and why in a few words."""
    reason = str(exc).split("]")[-1].strip() or type(exc).__name__
    return ServiceUnreachable(
        f"cannot reach the service at {base_url} ({reason}); is it running (`bridge serve` "
        "or `make run`)?",
        details={"url": base_url, "reason": reason},
    )

"""ColabClient and KeepAlive against the control-plane stand-in on loopback."""

from __future__ import annotations

import datetime
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.auth.transport.requests import AuthorizedSession
from google.oauth2.credentials import Credentials
from requests.adapters import HTTPAdapter

from bridge.errors import (
    BackendUnavailable,
    ColabTooManyAssignments,
    Conflict,
    NotFound,
    Unauthorized,
    ValidationError,
)
from colab_runtime.colab import Assignment, ColabClient, new_notebook_hash
from colab_runtime.keepalive import KeepAlive
from tests.support.fake_colab import ColabState, create_colab_app
from tests.support.fake_google import LoopbackServer, Tokens


@pytest.fixture
def colab() -> Iterator[tuple[ColabState, str]]:
    state = ColabState()
    with LoopbackServer(create_colab_app(state)) as server:
        yield state, server.url


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def make_client(colab: tuple[ColabState, str], session: requests.Session) -> ColabClient:
    state, url = colab
    return ColabClient(session, base_url=url, clock=lambda: state.now)


def runtime_status(session: requests.Session, a: Assignment) -> int:
    headers = {"X-Colab-Runtime-Proxy-Token": a.proxy_token, "X-Colab-Client-Agent": "t"}
    answer = session.get(a.proxy_url + "/api", headers=headers, timeout=5)
    assert answer.status_code == 200 or answer.content == b""  # a refusal has no body
    return answer.status_code


def test_notebook_hash_shape() -> None:
    nbh = new_notebook_hash()
    assert len(nbh) == 44 and nbh.endswith(".") and "-" not in nbh
    assert nbh.rstrip(".").count("_") == 4 and len(nbh.rstrip(".")) == 36
    assert new_notebook_hash() != nbh


def test_assign_follows_the_ticket_flow(colab, session) -> None:
    state, _ = colab
    client = make_client(colab, session)
    a = client.assign("T4", "GPU")
    assert a.endpoint == "gpu-t4-s-1" and a.accelerator == "T4" and a.variant == "GPU"
    assert a.token_expires_at == state.now + 3600
    methods = [m for m, _ in state.requests]
    assert methods == ["GET", "POST"]
    assert all(
        "authuser=0" in path and f"nbh={client.notebook_hash}" in path for _, path in state.requests
    )
    assert runtime_status(session, a) == 200


def test_assign_again_returns_the_held_runtime(colab, session) -> None:
    state, _ = colab
    client = make_client(colab, session)
    first = client.assign()
    second = client.assign()
    assert second.endpoint == first.endpoint
    assert len(state.assignments) == 1
    assert [m for m, _ in state.requests] == ["GET", "POST", "GET"]


def test_too_many_assignments_is_a_conflict(colab, session) -> None:
    state, _ = colab
    state.max_assignments = 1
    make_client(colab, session).assign()
    with pytest.raises(ColabTooManyAssignments, match="too many Colab runtimes"):
        make_client(colab, session).assign()


def test_refused_credentials_are_unauthorized(colab, session) -> None:
    state, _ = colab
    state.tokens = Tokens()
    with pytest.raises(Unauthorized, match="sign in again"):
        make_client(colab, session).assign()


@pytest.mark.parametrize(
    ("status", "raw", "message"),
    [
        (500, "{}", "HTTP 500"),
        (503, "Service Unavailable", "HTTP 503"),
        (200, ")]}'\n{not json", "malformed JSON"),
        (200, ")]}'\n[1, 2]", "not an object"),
        (200, ')]}\'\n{"acc": "T4"}', "without 'token'"),
    ],
)
def test_server_failures_are_backend_unavailable(colab, session, status, raw, message) -> None:
    state, _ = colab
    state.fail_next.append((status, raw))
    with pytest.raises(BackendUnavailable, match=message):
        make_client(colab, session).assign()


def test_unreachable_control_plane_is_backend_unavailable(session) -> None:
    client = ColabClient(session, base_url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(BackendUnavailable, match="cannot reach Colab"):
        client.assign()


@pytest.mark.parametrize(
    ("accelerator", "variant"), [("T4", "CPU"), ("V100", "GPU"), ("T4", "TPU"), ("", "GPU")]
)
def test_unknown_accelerator_or_variant_is_rejected_before_any_request(
    colab, session, accelerator, variant
) -> None:
    state, _ = colab
    with pytest.raises(ValidationError):
        make_client(colab, session).assign(accelerator, variant)
    assert state.requests == []


def test_list_keep_alive_and_release(colab, session) -> None:
    state, _ = colab
    client = make_client(colab, session)
    a = client.assign("L4")
    listed = client.list_assignments()
    assert [(x.endpoint, x.accelerator, x.variant) for x in listed] == [(a.endpoint, "L4", "GPU")]
    client.keep_alive(a.endpoint)
    assert state.keepalives == [a.endpoint]
    client.release(a.endpoint)
    assert client.list_assignments() == []
    with pytest.raises(NotFound):
        client.keep_alive(a.endpoint)
    with pytest.raises(ValidationError):
        client.release("../assign")


def test_expired_proxy_token_is_renewed_not_treated_as_dead(colab, session) -> None:
    state, _ = colab
    client = make_client(colab, session)
    a = client.assign()
    state.now += 3601
    assert runtime_status(session, a) == 404  # the token expired, the runtime did not
    assert a.token_expires_within(0, client.clock())
    renewed = client.renew_proxy_token(a)
    assert renewed.endpoint == a.endpoint and renewed.proxy_token != a.proxy_token
    assert renewed.token_expires_at == state.now + 3600
    assert runtime_status(session, renewed) == 200
    assert len(state.assignments) == 1
    assert [m for m, _ in state.requests].count("POST") == 1  # no second assignment


def test_renewal_from_a_fresh_client_finds_the_runtime_in_the_list(colab, session) -> None:
    state, _ = colab
    a = make_client(colab, session).assign()
    other = make_client(colab, session)  # another nbh: assign-GET hands out a ticket
    renewed = other.renew_proxy_token(a)
    assert renewed.endpoint == a.endpoint and runtime_status(session, renewed) == 200
    assert len(state.assignments) == 1


def test_renewal_of_a_released_runtime_says_it_is_gone(colab, session) -> None:
    client = make_client(colab, session)
    a = client.assign()
    client.release(a.endpoint)
    with pytest.raises(NotFound, match="no longer assigned"):
        client.renew_proxy_token(a)


def test_keepalive_tick_renews_only_near_expiry(colab, session) -> None:
    state, _ = colab
    client = make_client(colab, session)
    renewed: list[Assignment] = []
    keeper = KeepAlive(client, client.assign(), renew_margin=300, on_renew=renewed.append)
    keeper.tick()
    assert state.keepalives == ["gpu-t4-s-1"] and renewed == []
    state.now += 3400
    keeper.tick()
    assert len(renewed) == 1 and keeper.assignment is renewed[0]
    assert renewed[0].token_expires_at == state.now + 3600
    assert runtime_status(session, keeper.assignment) == 200


def test_keepalive_failure_is_recorded_and_retried(colab, session) -> None:
    state, _ = colab
    client = make_client(colab, session)
    keeper = KeepAlive(client, client.assign())
    state.fail_next.append((500, "{}"))
    keeper.tick()
    assert isinstance(keeper.last_error, BackendUnavailable)
    keeper.tick()
    assert keeper.last_error is None and state.keepalives == ["gpu-t4-s-1"]


def test_keepalive_thread_starts_and_stops(colab, session) -> None:
    state, _ = colab
    client = make_client(colab, session)
    keeper = KeepAlive(client, client.assign(), interval=0.01)
    keeper.start()
    try:
        deadline = time.monotonic() + 10
        while len(state.keepalives) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(Conflict):
            keeper.start()
    finally:
        keeper.stop()
    assert len(state.keepalives) >= 3
    count = len(state.keepalives)
    time.sleep(0.05)
    assert len(state.keepalives) == count


def test_an_unreachable_token_endpoint_is_backend_unavailable(colab) -> None:
    state, url = colab
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    credentials = Credentials(
        token="stale", refresh_token="refresh", client_id="c", client_secret="s",
        token_uri=f"http://127.0.0.1:{closed}/token",
        expiry=datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(1),
    )  # fmt: skip
    with AuthorizedSession(credentials) as google_session:
        client = make_client(colab, google_session)
        with pytest.raises(BackendUnavailable, match="cannot renew the Google sign-in"):
            client.assign()
    assert state.requests == []  # it never got as far as Colab


class FailingOnce(HTTPAdapter):
    """A transport that raises something unexpected once, then works."""

    def __init__(self, failures: int = 1) -> None:
        super().__init__()
        self.failures = failures

    def send(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("boom")
        return super().send(*args, **kwargs)


def test_keepalive_outlives_an_unexpected_error(colab, session) -> None:
    state, _ = colab
    client = make_client(colab, session)
    keeper = KeepAlive(client, client.assign(), interval=0.01)
    session.mount("http://", FailingOnce())
    keeper.tick()  # recorded, not raised
    assert isinstance(keeper.last_error, BackendUnavailable)
    assert "RuntimeError: boom" in keeper.last_error.message
    session.mount("http://", FailingOnce())
    keeper.start()  # the thread's first round fails the same way; it goes on
    try:
        deadline = time.monotonic() + 10
        while len(state.keepalives) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        keeper.stop()
    assert len(state.keepalives) >= 2 and keeper.last_error is None

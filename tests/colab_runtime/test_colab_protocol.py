"""The control plane as Google's current clients see it (colab-protocol.md), against the strict
stand-in: each test here failed on the client that followed the superseded facts."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
import requests

from bridge.errors import (
    BackendUnavailable,
    ColabAcceleratorUnavailable,
    ColabDenied,
    ColabNotEntitled,
    ColabQuotaExceeded,
    Forbidden,
)
from colab_runtime.colab import ColabClient
from colab_runtime.colab_answers import check_outcome
from colab_runtime.keepalive import KeepAlive
from colab_runtime.proxy import ProxyTokenRefused
from tests.support.fake_colab import OLD_KEEPALIVE, ColabState, create_colab_app
from tests.support.fake_google import LoopbackServer


@pytest.fixture
def colab() -> Iterator[tuple[ColabState, str]]:
    state = ColabState()
    with LoopbackServer(create_colab_app(state)) as server:
        yield state, server.url


@pytest.fixture
def client(colab: tuple[ColabState, str]) -> Iterator[ColabClient]:
    state, url = colab
    with requests.Session() as session:
        yield ColabClient(session, base_url=url, clock=lambda: state.now)


def test_the_stand_in_refuses_the_superseded_header_and_keep_alive_rpc(colab) -> None:
    _, url = colab
    query = {"authuser": "0"}
    old = requests.get(url + "/tun/m/assignments", params=query, timeout=5, headers={
        "Accept": "application/json", "X-Goog-Colab-Client-Agent": "x"})
    assert old.status_code == 400
    rpc = requests.post(url + OLD_KEEPALIVE, data="[]", timeout=5)
    assert rpc.status_code == 403 and "USER_PROJECT_DENIED" in rpc.text


def test_keep_alive_is_a_get_with_the_tunnel_header(colab, client) -> None:
    state, url = colab
    a = client.assign()
    client.keep_alive(a.endpoint)
    assert state.keepalives == [a.endpoint]
    assert ("GET", f"/tun/m/{a.endpoint}/keep-alive/?authuser=0") in state.requests
    bare = requests.get(f"{url}/tun/m/{a.endpoint}/keep-alive/", params={"authuser": "0"},
                        headers={"Accept": "application/json", "X-Colab-Client-Agent": "x"},
                        timeout=5)
    assert bare.status_code == 400  # without X-Colab-Tunnel: Google


def test_a_keep_alive_read_timeout_counts_as_success(colab) -> None:
    state, url = colab

    class Slow(requests.Session):
        def request(self, method, url, **kwargs):  # type: ignore[no-untyped-def, override]
            if "/keep-alive/" in url:
                raise requests.ReadTimeout("read timed out")
            return super().request(method, url, **kwargs)

    with Slow() as session:
        slow = ColabClient(session, base_url=url, clock=lambda: state.now)
        slow.keep_alive(slow.assign().endpoint)  # no error


def test_release_answers_an_empty_body_and_is_a_success(colab, client) -> None:
    state, _ = colab
    a = client.assign()
    client.release(a.endpoint)
    assert state.assignments == {}


def test_the_post_answer_has_integer_variant_and_fit(colab, client) -> None:
    state, _ = colab
    state.fit = 1800
    a = client.assign("L4")
    assert a.variant == "GPU" and a.fit == 1800 and a.machine_shape == "0"
    again = client.assign("L4")  # the GET answers strings
    assert again.variant == "GPU" and again.endpoint == a.endpoint


@pytest.mark.parametrize(("outcome", "error"), [
    ("QUOTA_DENIED_REQUESTED_VARIANTS", ColabQuotaExceeded),
    ("QUOTA_EXCEEDED_USAGE_TIME", ColabQuotaExceeded),
    ("DENYLISTED", ColabDenied),
])
def test_an_outcome_is_told_as_such(colab, client, outcome, error) -> None:
    state, _ = colab
    state.outcome = outcome  # the stand-in answers its number, as the extension reads it
    with pytest.raises(error, match=outcome) as caught:
        client.assign()
    assert caught.value.details["outcome"] == outcome and state.assignments == {}


def test_outcomes_are_read_as_numbers_and_as_names() -> None:
    for given in (2, "QUOTA_EXCEEDED_USAGE_TIME"):
        with pytest.raises(ColabQuotaExceeded, match="used up its Colab usage time"):
            check_outcome({"outcome": given})
    with pytest.raises(ColabDenied):
        check_outcome({"outcome": 5})
    with pytest.raises(BackendUnavailable, match="no runtime \\(outcome UNDEFINED_OUTCOME\\)"):
        check_outcome({"outcome": 0})
    check_outcome({"outcome": 4, "runtimeProxyInfo": {"url": "u", "token": "t"}})  # SUCCESS


def test_503_offers_other_accelerators_and_400_says_not_entitled(colab, client) -> None:
    state, _ = colab
    state.unavailable = {"T4"}
    with pytest.raises(ColabAcceleratorUnavailable, match="no T4 free") as caught:
        client.assign("T4")
    assert caught.value.code == "COLAB_ACCELERATOR_UNAVAILABLE"
    assert "L4" in caught.value.details["alternatives"]
    state.not_entitled = {"A100"}
    with pytest.raises(ColabNotEntitled, match="not entitled to a A100"):
        client.assign("A100")


def test_browser_runtimes_are_listed_with_their_proxy_and_entries_without_it_kept(
    colab, client
) -> None:
    state, _ = colab
    browser = state.open_in_browser("L4")
    a = client.assign()
    listed = {x.endpoint: x for x in client.list_assignments()}
    assert set(listed) == {a.endpoint, browser}
    assert listed[browser].proxy_url.endswith(browser) and listed[browser].proxy_token
    assert client.runtime_started(listed[browser])  # its token opens its proxy
    state.listed_without_proxy = {browser}  # the extension's list: the field is optional
    listed = {x.endpoint: x for x in client.list_assignments()}
    assert listed[browser].proxy_url == "" and listed[a.endpoint].proxy_url


@pytest.mark.parametrize("refusal", [404, 401])
def test_an_expired_proxy_token_is_renewed_then_the_runtime_checked(
    colab, client, refusal
) -> None:
    state, _ = colab
    state.proxy_refusal = refusal
    keeper = KeepAlive(client, client.assign())
    keeper.preflight()
    old = keeper.assignment.proxy_token
    state.expire_proxy_tokens(keeper.assignment.endpoint)  # well before its stated expiry
    keeper.tick()
    assert (keeper.state, keeper.last_error) == ("alive", None)
    fresh = keeper.assignment.proxy_token
    assert fresh != old and state.proxy_checks[-2:] == [(old, refusal), (fresh, 200)]
    state.expire_proxy_tokens(keeper.assignment.endpoint)
    state.restart(keeper.assignment.endpoint)  # refused, then renewed: the restart is seen
    keeper.tick()
    assert (keeper.state, keeper.gone_kind) == ("gone", "restarted")


def test_a_proxy_that_refuses_even_a_renewed_token_does_not_end_the_runtime(
    colab, client
) -> None:
    state, _ = colab
    keeper = KeepAlive(client, client.assign())
    state.expire_proxy_tokens(keeper.assignment.endpoint)
    state.stale_tokens = 1  # the token the next list mints is refused too
    keeper.tick()
    assert keeper.state == "alive" and isinstance(keeper.last_error, ProxyTokenRefused)
    keeper.tick()  # the next round renews again; now the proxy takes it
    assert (keeper.state, keeper.last_error) == ("alive", None)


def test_an_expired_token_of_a_reclaimed_runtime_is_a_reclaim(colab, client) -> None:
    state, _ = colab
    keeper = KeepAlive(client, client.assign())
    state.expire_proxy_tokens(keeper.assignment.endpoint)
    state.reclaim(keeper.assignment.endpoint)  # the list decides: gone
    keeper.tick()
    assert (keeper.state, keeper.gone_kind) == ("gone", "reclaimed")


def test_renewal_runs_when_keep_alive_is_refused(colab, client) -> None:
    state, _ = colab
    renewed = []
    keeper = KeepAlive(client, client.assign(), on_renew=renewed.append)
    state.now += 3400
    state.fail_next.append((403, '{"error": "USER_PROJECT_DENIED"}'))
    keeper.tick()
    assert isinstance(keeper.last_error, Forbidden)
    assert len(renewed) == 1 and keeper.state == "alive"


def test_keep_alive_holds_the_runtime_past_fit_and_a_reclaim_is_noticed(colab, client) -> None:
    state, _ = colab
    gone: list[str] = []
    keeper = KeepAlive(client, client.assign(), on_gone=gone.append)
    for _ in range(4):  # 4 x 2000 s > fit (5400 s), pinged each round
        state.now += 2000
        keeper.tick()
    assert keeper.state == "alive" and len(state.assignments) == 1 and gone == []
    state.now += state.fit + 1  # no keep-alive for longer than fit: Colab takes it back
    keeper.tick()
    assert keeper.state == "gone" and len(gone) == 1 and "no longer lists" in gone[0]
    keeper.tick()  # once gone, nothing more is sent or told
    assert len(gone) == 1


def test_the_session_cap_ends_a_kept_alive_runtime(colab, client) -> None:
    state, _ = colab
    gone: list[str] = []
    keeper = KeepAlive(client, client.assign(), on_gone=gone.append)
    for _ in range(int(state.session_cap / 3000) + 1):
        state.now += 3000
        keeper.tick()
    assert keeper.state == "gone" and gone


def test_pings_stop_after_the_idle_limit(colab, client) -> None:
    state, _ = colab
    used = [state.now]
    keeper = KeepAlive(client, client.assign(), idle_limit=600, last_used=lambda: used[0])
    state.now += 300
    keeper.tick()
    assert keeper.state == "alive" and len(state.keepalives) == 1
    state.now += 400
    keeper.tick()
    assert keeper.state == "idle" and len(state.keepalives) == 1
    used[0] = state.now  # a request came in: pings resume
    keeper.tick()
    assert keeper.state == "alive" and len(state.keepalives) == 2


def test_preflight_is_one_keep_alive_and_its_failure_raises(colab, client) -> None:
    state, _ = colab
    keeper = KeepAlive(client, client.assign())
    keeper.preflight()
    assert keeper.pings == 1
    state.fail_next.append((500, "{}"))
    with pytest.raises(BackendUnavailable):
        keeper.preflight()


def test_a_503_offers_eligible_accelerators_and_says_when_they_could_not_be_read(colab) -> None:
    state, url = colab
    state.unavailable = {"T4"}
    state.eligible = {"VARIANT_GPU": ["T4", "L4"]}
    with requests.Session() as session:
        read = ColabClient(session, base_url=url, api_url=url, clock=lambda: state.now)
        with pytest.raises(ColabAcceleratorUnavailable) as exc:
            read.assign("T4", "GPU")
        assert exc.value.details["alternatives"] == ["L4"]
        assert exc.value.details["alternatives_checked"] is True
        unread = ColabClient(session, base_url=url, api_url="http://127.0.0.1:9", clock=time.time)
        with pytest.raises(ColabAcceleratorUnavailable) as exc:
            unread.assign("T4", "GPU")  # user-info unreachable: the variant's, not checked
        assert exc.value.details["alternatives_checked"] is False
        assert "L4" in exc.value.details["alternatives"] and "for example" in exc.value.message


def test_a_restart_changes_the_runtimes_start_not_its_listing(colab, client) -> None:
    state, _ = colab
    a = client.assign()
    before = client.runtime_started(a)
    state.restart(a.endpoint)
    now = client.find(a.endpoint)
    assert now is not None and before is not None
    assert client.runtime_started(now) not in (None, before)
    with pytest.raises(ProxyTokenRefused, match="404"):  # an empty 404, not a verdict
        client.runtime_started(dataclasses.replace(now, proxy_token="wrong"))

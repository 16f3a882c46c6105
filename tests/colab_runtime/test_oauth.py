"""Google sign-in against the OAuth stand-in, and the signed session against the Colab stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from bridge.errors import Forbidden, Unauthorized, ValidationError
from colab_runtime import oauth
from colab_runtime.colab import ColabClient
from tests.support.fake_colab import ColabState, create_colab_app
from tests.support.fake_google import LoopbackServer, OAuthState, create_oauth_app

REDIRECT = "http://127.0.0.1:5000/api/v1/system/colab/callback"


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[OAuthState, str]]:
    # The stand-in speaks plain http on loopback; oauthlib insists on https otherwise.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    state = OAuthState()
    with LoopbackServer(create_oauth_app(state)) as server:
        yield state, server.url


def flow_for(google: tuple[OAuthState, str]):  # noqa: ANN201
    state, url = google
    return oauth.build_flow(
        state.client_id,
        state.client_secret,
        REDIRECT,
        token_uri=url + "/token",
        auth_uri=url + "/auth",
    )


def consent(consent_url: str) -> dict[str, str]:
    """What the browser does: open the consent URL, land on the callback."""
    answer = requests.get(consent_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_consent_url_asks_for_the_documented_scopes_offline(google) -> None:
    url, state = oauth.authorization_url(flow_for(google), login_hint="ada@example.com")
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(google[1] + "/auth?")
    assert query["scope"][0].split() == [
        "openid",
        "https://www.googleapis.com/auth/userinfo.profile",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/colaboratory",
        "https://www.googleapis.com/auth/drive.file",
    ]
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert query["state"] == [state] and query["redirect_uri"] == [REDIRECT]
    assert query["code_challenge_method"] == ["S256"]
    assert query["login_hint"] == ["ada@example.com"]


def test_code_exchange_from_stored_params_yields_refreshable_credentials(google) -> None:
    fake, _ = google
    flow = flow_for(google)
    url, state = oauth.authorization_url(flow)
    params = oauth.flow_params(flow, state)  # what the API keeps between consent and callback
    callback = consent(url)
    assert callback["state"] == state
    creds = oauth.exchange_code(dict(params), callback["code"], state=callback["state"])
    assert creds.token in fake.tokens.access
    assert creds.refresh_token in fake.refresh_tokens
    assert fake.token_requests[-1]["code_verifier"] == params["code_verifier"]

    restored = oauth.load_credentials(oauth.dump_credentials(creds))
    assert restored.refresh_token == creds.refresh_token
    assert restored.token_uri == google[1] + "/token"
    oauth.refresh(restored)
    assert restored.token != creds.token and restored.token in fake.tokens.access


def test_live_flow_exchange_and_bad_inputs(google) -> None:
    flow = flow_for(google)
    url, state = oauth.authorization_url(flow)
    code = consent(url)["code"]
    with pytest.raises(Forbidden, match="state"):
        oauth.exchange_code(oauth.flow_params(flow, state), code, state="forged")
    assert oauth.exchange_code(flow, code).refresh_token
    with pytest.raises(Unauthorized, match="invalid_grant"):
        oauth.exchange_code(flow, code)  # a code is good once
    with pytest.raises(ValidationError):
        oauth.exchange_code(flow, "")
    with pytest.raises(ValidationError, match="lack"):
        oauth.exchange_code({"client_id": "x"}, "code")
    with pytest.raises(ValidationError, match="client_secret"):
        oauth.build_flow("id", "", REDIRECT)


def test_wrong_client_secret_is_unauthorized(google) -> None:
    fake, url = google
    flow = oauth.build_flow(
        fake.client_id, "wrong", REDIRECT, token_uri=url + "/token", auth_uri=url + "/auth"
    )
    consent_url, _ = oauth.authorization_url(flow)
    with pytest.raises(Unauthorized, match="invalid_client"):
        oauth.exchange_code(flow, consent(consent_url)["code"])


def test_narrower_consent_without_colab_scope_is_forbidden(google) -> None:
    fake, _ = google
    fake.granted_scope = "openid https://www.googleapis.com/auth/drive.file"
    flow = flow_for(google)
    url, _ = oauth.authorization_url(flow)
    with pytest.raises(Forbidden, match="colaboratory"):
        oauth.exchange_code(flow, consent(url)["code"])


GRANTED_WITHOUT_DRIVE = ("openid https://www.googleapis.com/auth/userinfo.email "
                         "https://www.googleapis.com/auth/colaboratory")


def test_narrower_consent_with_colab_scope_is_accepted_and_kept(google) -> None:
    fake, _ = google
    fake.granted_scope = GRANTED_WITHOUT_DRIVE  # the user unticked drive.file
    flow = flow_for(google)
    url, _ = oauth.authorization_url(flow)
    creds = oauth.exchange_code(flow, consent(url)["code"])
    assert creds.granted_scopes == GRANTED_WITHOUT_DRIVE.split()
    # the stored credentials ask only for what was granted, so refreshing works (asking again
    # for the refused drive.file is refused: the hourly re-consent loop)
    again = oauth.load_credentials(oauth.dump_credentials(creds))
    assert sorted(again.scopes) == sorted(GRANTED_WITHOUT_DRIVE.split())
    oauth.refresh(again)
    assert again.token in fake.tokens.access


def test_consent_without_the_e_mail_scope_is_refused_clearly(google) -> None:
    fake, _ = google
    fake.granted_scope = "openid https://www.googleapis.com/auth/colaboratory"
    flow = flow_for(google)
    url, _ = oauth.authorization_url(flow)
    with pytest.raises(Forbidden, match="userinfo.email") as caught:
        oauth.exchange_code(flow, consent(url)["code"])
    assert caught.value.details["missing_scopes"] == ["userinfo.email"]


def test_an_expired_test_user_grant_is_invalid_grant(google) -> None:
    fake, _ = google
    flow = flow_for(google)
    url, _ = oauth.authorization_url(flow)
    creds = oauth.exchange_code(flow, consent(url)["code"])
    fake.refresh_tokens.clear()  # 7 days after a test user's consent
    with pytest.raises(Unauthorized, match="7 days") as caught:
        oauth.refresh(creds)
    assert caught.value.details["reason"] == "invalid_grant"


def test_the_installed_app_flow_takes_any_loopback_port(google) -> None:
    fake, url = google
    for redirect in ("http://127.0.0.1:8765/cb", "http://localhost:5000/api/v1/cb"):
        flow = oauth.build_flow(fake.client_id, fake.client_secret, redirect,
                                token_uri=url + "/token", auth_uri=url + "/auth")
        assert flow.client_type == "installed"
        consent_url, _ = oauth.authorization_url(flow)
        assert requests.get(consent_url, allow_redirects=False, timeout=5).status_code == 302
    fake.client_type, fake.redirect_uris = "web", ("http://localhost:5000/cb",)
    flow = oauth.build_flow(fake.client_id, fake.client_secret, "http://127.0.0.1:5000/cb",
                            token_uri=url + "/token", auth_uri=url + "/auth")
    refused = requests.get(oauth.authorization_url(flow)[0], allow_redirects=False, timeout=5)
    assert refused.status_code == 400 and "redirect_uri_mismatch" in refused.text


def test_insecure_endpoints_are_refused_outside_tests(google, monkeypatch) -> None:
    flow = flow_for(google)
    url, _ = oauth.authorization_url(flow)
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT")
    with pytest.raises(ValidationError, match="auth endpoint must use https"):
        oauth.authorization_url(flow_for(google))
    with pytest.raises(ValidationError, match="https"):
        oauth.exchange_code(flow, consent(url)["code"])


def test_credentials_without_refresh_token_are_not_stored(google) -> None:
    creds = oauth.load_credentials({"client_id": "a", "client_secret": "b", "refresh_token": "r"})
    creds._refresh_token = None  # as when Google sends no refresh token again
    with pytest.raises(Unauthorized, match="refresh token"):
        oauth.dump_credentials(creds)
    with pytest.raises(Unauthorized):
        oauth.load_credentials('{"client_id": "a"}')


def test_authorized_session_drives_colab_and_refreshes(google) -> None:
    fake, url = google
    flow = flow_for(google)
    consent_url, _ = oauth.authorization_url(flow)
    creds = oauth.exchange_code(flow, consent(consent_url)["code"])
    colab_state = ColabState(tokens=fake.tokens)
    with (
        LoopbackServer(create_colab_app(colab_state)) as colab,
        oauth.authorized_session(creds) as session,
    ):
        client = ColabClient(session, base_url=colab.url)
        first = client.assign()
        fake.tokens.access.clear()  # the access token expired server-side
        assert client.list_assignments()[0].endpoint == first.endpoint  # refreshed on 401
        assert creds.token in fake.tokens.access
        fake.tokens.access.clear()
        fake.refresh_tokens.clear()  # the user revoked access
        with pytest.raises(Unauthorized, match="revoked"):
            client.list_assignments()

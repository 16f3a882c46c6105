"""Google sign-in (google-auth-oauthlib) from a client_id / client_secret, and its credentials."""

# The installed-app flow with a *Desktop app* client, as Google's Colab CLI signs in
# (googlecolab/google-colab-cli): its redirect is a loopback address on any port, so nothing
# has to be registered and localhost vs 127.0.0.1 cannot mismatch. The credentials keep the
# scopes the user *granted* (a refused drive.file asked for again on every refresh fails).

# Consent and callback may run in different requests or processes: flow_params captures
# what the callback needs (state, PKCE verifier, endpoints) as strings, and exchange_code
# takes the live Flow or those params. dump_credentials holds a refresh token: encrypt it.

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from google.auth.exceptions import GoogleAuthError, RefreshError
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import InsecureTransportError, OAuth2Error

from bridge.errors import BackendUnavailable, Forbidden, Unauthorized, ValidationError

AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
TOKEN_URI = "https://oauth2.googleapis.com/token"
_GOOGLE = "https://www.googleapis.com/auth/"
COLAB_SCOPE = _GOOGLE + "colaboratory"
EMAIL_SCOPE = _GOOGLE + "userinfo.email"  # the control plane checks it (401 without)
DRIVE_FILE_SCOPE = _GOOGLE + "drive.file"
SCOPES: tuple[str, ...] = (
    "openid",
    _GOOGLE + "userinfo.profile",
    EMAIL_SCOPE,
    COLAB_SCOPE,
    DRIVE_FILE_SCOPE,
)
_PARAM_KEYS = ("client_id", "client_secret", "redirect_uri", "auth_uri", "token_uri", "state",
               "code_verifier")


def build_flow(
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    *,
    token_uri: str = TOKEN_URI,
    auth_uri: str = AUTH_URI,
    scopes: Sequence[str] = SCOPES,
    state: str | None = None,
    code_verifier: str | None = None,
) -> Flow:
    """An installed-app (Desktop client) OAuth flow, redirecting to loopback ``redirect_uri``."""
    for name, value in (("client_id", client_id), ("client_secret", client_secret),
                        ("redirect_uri", redirect_uri)):
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"{name} is required for Google sign-in")
    config = {"installed": {
        "client_id": client_id,
        "client_secret": client_secret,
        "auth_uri": auth_uri,
        "token_uri": token_uri,
        "redirect_uris": ["http://127.0.0.1", "http://localhost"],
    }}
    return Flow.from_client_config(
        config, scopes=list(scopes), redirect_uri=redirect_uri, state=state,
        code_verifier=code_verifier,
    )


def authorization_url(flow: Flow, *, login_hint: str | None = None) -> tuple[str, str]:
    """The consent URL (offline access, so a refresh token comes back) and its state."""
    extra = {"login_hint": login_hint} if login_hint else {}
    try:
        url, state = flow.authorization_url(
            access_type="offline", prompt="consent", include_granted_scopes="true", **extra
        )
    except InsecureTransportError as exc:
        raise ValidationError("the Google auth endpoint must use https") from exc
    return str(url), str(state)


def flow_params(flow: Flow, state: str) -> dict[str, str]:
    """What the callback needs to finish this flow (after authorization_url), as strings."""
    config = flow.client_config
    return {
        "client_id": config["client_id"],
        "client_secret": config["client_secret"],
        "redirect_uri": str(flow.redirect_uri),
        "auth_uri": config["auth_uri"],
        "token_uri": config["token_uri"],
        "state": state,
        "code_verifier": str(flow.code_verifier or ""),
    }


def exchange_code(
    flow_or_params: Flow | Mapping[str, str], code: str, *, state: str | None = None
) -> Credentials:
    """Trade the callback's code for credentials (with a refresh token)."""
    if not isinstance(code, str) or not code:
        raise ValidationError("the authorization code is missing")
    if isinstance(flow_or_params, Flow):
        flow = flow_or_params
    else:
        expected = flow_or_params.get("state")
        if state is not None and expected and state != expected:
            raise Forbidden("OAuth state does not match this sign-in")
        flow = _rebuild(flow_or_params)
    try:
        flow.fetch_token(code=code)
    except InsecureTransportError as exc:
        raise ValidationError("the Google token endpoint must use https") from exc
    except OAuth2Error as exc:
        raise Unauthorized(f"Google refused the sign-in: {exc.error}: {exc.description}") from exc
    except Warning as exc:
        # oauthlib raises (not warns) when the user granted fewer scopes than asked.
        token = getattr(exc, "token", None)
        if token is None:
            raise
        flow.oauth2session.token = token
    except OSError as exc:
        raise BackendUnavailable(f"cannot reach Google's token endpoint: {exc}") from exc
    return granted_only(flow.credentials)


def granted_only(credentials: Credentials) -> Credentials:
    """The credentials narrowed to the scopes the user granted; refused Colab or e-mail access
    is Forbidden (Colab needs both), a refused drive.file only turns the Drive features off."""
    granted = list(credentials.granted_scopes or credentials.scopes or ())
    missing = [s.rsplit("/", 1)[-1] for s in (COLAB_SCOPE, EMAIL_SCOPE) if s not in granted]
    if missing:
        raise Forbidden(
            f"the Google consent did not grant {' and '.join(missing)}: connect again and leave "
            "every Colab box ticked on the consent page", details={"missing_scopes": missing})
    return Credentials(
        token=credentials.token, refresh_token=credentials.refresh_token,
        token_uri=credentials.token_uri, client_id=credentials.client_id,
        client_secret=credentials.client_secret, scopes=granted, granted_scopes=granted,
        expiry=credentials.expiry,
    )


def dump_credentials(credentials: Credentials) -> str:
    """Credentials as JSON (refresh token included): encrypt before storing."""
    if not credentials.refresh_token:
        raise Unauthorized("no refresh token came back; sign in again with consent")
    return str(credentials.to_json())


def load_credentials(data: str | Mapping[str, Any]) -> Credentials:
    """Credentials back from ``dump_credentials`` output."""
    try:
        info = json.loads(data) if isinstance(data, str) else dict(data)
        credentials: Credentials = Credentials.from_authorized_user_info(info)
        # from_authorized_user_info always resets token_uri to Google's; keep the stored one.
        # (cast: google-auth leaves with_token_uri's return unannotated)
        return cast(Credentials, credentials.with_token_uri(info.get("token_uri") or TOKEN_URI))
    except (ValueError, TypeError) as exc:
        raise Unauthorized(f"stored Google credentials are unusable: {exc}") from exc


def refresh(credentials: Credentials) -> Credentials:
    """Refresh the access token now; a revoked refresh token is Unauthorized."""
    try:
        credentials.refresh(Request())
    except RefreshError as exc:
        raise refresh_refused(exc) from exc
    except GoogleAuthError as exc:  # TransportError: the token endpoint is unreachable
        raise BackendUnavailable(f"cannot reach Google's token endpoint: {exc}") from exc
    return credentials


def refresh_refused(exc: RefreshError) -> Unauthorized:
    """A refused refresh: invalid_grant is a dead grant (a test user's 7 days, or revoked)."""
    if "invalid_grant" in str(exc):
        return Unauthorized(
            "Google no longer accepts this sign-in (invalid_grant): consent of a test user of an "
            "app in Testing expires after 7 days, or the access was revoked; sign in again",
            details={"reason": "invalid_grant"})
    return Unauthorized(f"Google refused to renew the sign-in: {exc}",
                        details={"reason": "refresh_failed"})


def authorized_session(credentials: Credentials) -> AuthorizedSession:
    """A requests session that signs requests and refreshes an expired access token."""
    return AuthorizedSession(credentials)


def _rebuild(params: Mapping[str, str]) -> Flow:
    missing = [k for k in _PARAM_KEYS if k not in params]
    if missing:
        raise ValidationError(f"sign-in params lack {', '.join(missing)}")
    return build_flow(
        params["client_id"], params["client_secret"], params["redirect_uri"],
        token_uri=params["token_uri"], auth_uri=params["auth_uri"],
        state=params["state"] or None, code_verifier=params["code_verifier"] or None,
    )

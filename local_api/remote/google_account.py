"""A user's Google sign-in for Colab (pending consent, stored credentials) and what it drives:
the control-plane client, keep-alive, release, and a runtime's limits."""

# Between consent and callback the flow's parameters (client secret, PKCE verifier) are kept
# sealed with the app's SecretBox; only the OAuth `state` is stored in clear, to find the row.

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from google.oauth2.credentials import Credentials
from sqlalchemy import delete, null, select

from bridge.errors import BridgeError, Forbidden, ValidationError
from colab_runtime import oauth
from colab_runtime.colab import Assignment, ColabClient
from colab_runtime.keepalive import KeepAlive
from local_api.storage import schema
from local_api.storage.crypto import SecretBox
from local_api.storage.db import engine
from local_api.timeutil import duration, utcnow


@dataclass(frozen=True)
class GoogleEndpoints:
    """Where Google's services are (Settings: BRIDGE_GOOGLE_AUTH_URI, BRIDGE_GOOGLE_TOKEN_URI,
    BRIDGE_COLAB_URL, BRIDGE_COLAB_API_URL, BRIDGE_GOOGLE_DRIVE_URL), and keep-alive timing."""

    auth_uri: str
    token_uri: str
    colab_url: str
    colab_api_url: str
    drive_root_url: str
    keepalive_interval: float = 60.0  # Google's CLI pings about every 60 s
    idle_limit: float = 3600.0  # no pings after this long without a request; 0: never stop
    clock: Callable[[], float] = field(default=time.time)


def endpoints() -> GoogleEndpoints:
    """The app's endpoints: the ``google`` collaborator (tests), else the Settings'."""
    found = current_app.extensions["collaborators"].get("google")
    if isinstance(found, GoogleEndpoints):
        return found
    s = current_app.config["SETTINGS"]
    return GoogleEndpoints(s.google_auth_uri, s.google_token_uri, s.colab_url, s.colab_api_url,
                           s.google_drive_url, idle_limit=float(s.colab_idle_limit),
                           keepalive_interval=float(s.colab_keepalive_interval))


def _box() -> SecretBox:
    return current_app.extensions["secret_box"]  # type: ignore[no-any-return]


def stored_credentials(user_id: int, client_id: str | None = None) -> Credentials | None:
    """The user's Google credentials (None when never signed in or for another OAuth client)."""
    with engine().connect() as conn:
        row = conn.execute(
            select(schema.google_accounts.c.credentials_enc).where(
                schema.google_accounts.c.user_id == user_id
            )
        ).first()
    if row is None or not row[0]:
        return None
    credentials = oauth.load_credentials(_box().decrypt(row[0]))
    if client_id is not None and credentials.client_id != client_id:
        return None
    return credentials


def begin_sign_in(
    user_id: int, client_id: str, client_secret: str, redirect_uri: str
) -> str:
    """Start a consent: remember the flow (sealed) and return the consent URL."""
    where = endpoints()
    flow = oauth.build_flow(
        client_id, client_secret, redirect_uri, token_uri=where.token_uri, auth_uri=where.auth_uri
    )
    url, state = oauth.authorization_url(flow)
    pending = {"state": state, "sealed": _box().encrypt(json.dumps(oauth.flow_params(flow, state)))}
    _save(user_id, pending=pending)
    return url


def finish_sign_in(state: str, code: str) -> int:
    """The callback: trade the code for credentials, store them encrypted; returns the user id."""
    if not state:
        raise ValidationError("the OAuth callback lacks its state", details={"field": "state"})
    with engine().connect() as conn:
        rows = conn.execute(
            select(schema.google_accounts.c.user_id, schema.google_accounts.c.pending)
        ).all()
    match = next((r for r in rows if isinstance(r[1], dict) and r[1].get("state") == state), None)
    if match is None:
        raise Forbidden("this sign-in is unknown or already finished; connect again")
    params = json.loads(_box().decrypt(match[1]["sealed"]))
    credentials = oauth.exchange_code(params, code, state=state)
    _save(int(match[0]), credentials=oauth.dump_credentials(credentials), pending=None)
    return int(match[0])


def forget(user_id: int) -> None:
    """Drop the stored credentials (revoked or refused by Google)."""
    with engine().begin() as conn:
        conn.execute(
            delete(schema.google_accounts).where(schema.google_accounts.c.user_id == user_id)
        )


def colab_client(credentials: Credentials, notebook_hash: str | None = None) -> ColabClient:
    """A control-plane client signed with these credentials."""
    where = endpoints()
    return ColabClient(
        oauth.authorized_session(credentials),
        base_url=where.colab_url,
        api_url=where.colab_api_url,
        notebook_hash=notebook_hash,
        clock=where.clock,
    )


COLAB_SESSION_CAP = 12 * 3600  # free tier; paid tiers get up to 24 h


def colab_limits(started_at: float | None, fit: float | None) -> dict[str, Any]:
    """A Colab runtime's estimated time left (from the session cap) and the limits it runs under:
    ``idle_reclaim`` is the runtime's own ``fit`` from the assign answer (null: not told)."""
    left = COLAB_SESSION_CAP - (time.time() - float(started_at or time.time()))
    return {"time_left": duration(max(0.0, round(left))),
            "limits": {"session_cap": duration(COLAB_SESSION_CAP),
                       "idle_reclaim": duration(fit) if fit else None}}


def keeper(
    client: ColabClient, colab: dict[str, Any], assignment: Assignment | None = None, *,
    last_used: Callable[[], float] | None = None, on_gone: Callable[[str], None] | None = None,
) -> KeepAlive:
    """A keep-alive for a runtime (not started); a restored one (token unknown) has its token
    renewed at the first round, and knows the runtime's server start stored with the worker
    (``colab["runtime_started"]``), so a VM restart while the service was down is noticed."""
    if assignment is None:
        assignment = Assignment(colab["endpoint"], colab.get("proxy_url", ""), "", 0.0,
                                colab.get("accelerator", "T4"), colab.get("variant", "GPU"),
                                colab.get("fit"))
    where = endpoints()
    keep = KeepAlive(client, assignment, interval=where.keepalive_interval,
                     idle_limit=where.idle_limit, last_used=last_used, on_gone=on_gone)
    keep.started_at = colab.get("runtime_started") or None
    return keep


def release_runtime(client: ColabClient | None, endpoint: str) -> str | None:
    """Release a Colab runtime (it stops being billed); a warning for the user if it failed."""
    try:
        if client is None:
            raise ValidationError("no Google sign-in to release it with")
        client.release(endpoint)
    except BridgeError as exc:
        return (f"Colab runtime {endpoint} was not released ({exc.message}); release it in "
                "Colab (Runtime > Disconnect and delete runtime)")
    return None


def colab_client_for(user_id: int | None, notebook_hash: str | None = None) -> ColabClient:
    """The control-plane client of a user's stored sign-in (a stored Colab worker's owner)."""
    credentials = stored_credentials(int(user_id or 0))
    if credentials is None:
        raise ValidationError("no stored Google sign-in")
    return colab_client(credentials, notebook_hash)


_KEEP: Any = object()


def _save(user_id: int, *, credentials: Any = _KEEP, pending: Any = _KEEP) -> None:
    table = schema.google_accounts
    values: dict[str, Any] = {"updated_at": utcnow()}
    if credentials is not _KEEP:
        values["credentials_enc"] = _box().encrypt(credentials)
    if pending is not _KEEP:
        values["pending"] = null() if pending is None else pending  # SQL NULL, not JSON null
    with engine().begin() as conn:
        found = conn.execute(select(table.c.user_id).where(table.c.user_id == user_id)).first()
        if found is None:
            values.setdefault("credentials_enc", "")
            conn.execute(table.insert().values(user_id=user_id, **values))
        else:
            conn.execute(table.update().where(table.c.user_id == user_id).values(**values))

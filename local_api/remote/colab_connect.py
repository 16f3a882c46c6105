"""Connect to Colab: Google sign-in (installed-app flow, loopback redirect), a runtime from the
control plane, a pre-flight keep-alive, the worker notebook on it, then attach."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from typing import Any

from flask import current_app
from flask import request as incoming

from bridge.errors import BackendUnavailable, BridgeError, NotFound, Unauthorized
from colab_runtime import drive
from colab_runtime.colab import variant_of
from colab_runtime.keepalive import KeepAlive
from colab_runtime.launch import RemoteRuntime
from colab_runtime.notebook import worker_notebook_path
from colab_runtime.proxy import ProxyTokenRefused
from local_api.accounts.identity import Identity
from local_api.remote import google_account
from local_api.remote.connect_request import ColabConnect, Target
from local_api.remote.launching import launch

Attach = Callable[[ColabConnect, Target, Identity], dict[str, Any]]


def connect(request: ColabConnect, who: Identity, name: str, attach: Attach) -> dict[str, Any]:
    """The credentials way of a connect; ``attach`` is attach._attach (probe, then attach)."""
    credentials = google_account.stored_credentials(who.user_id, request.client_id)
    if credentials is None:
        return _authorization_required(request, who)
    if request.manual:
        return _manual(credentials)
    request.launch.check(colab=True)  # after the consent step: the sign-in comes first
    accelerator = request.accelerator
    client = google_account.colab_client(credentials)
    try:
        assignment = client.assign(accelerator, variant_of(accelerator))
    except Unauthorized as exc:  # a dead grant (invalid_grant) or refused credentials
        google_account.forget(who.user_id)
        return _authorization_required(request, who, reason=exc.message)
    colab = {"endpoint": assignment.endpoint, "accelerator": assignment.accelerator,
             "variant": assignment.variant, "notebook_hash": client.notebook_hash,
             "proxy_url": assignment.proxy_url, "fit": assignment.fit}
    keeper = google_account.keeper(client, colab, assignment)
    secret = secrets.token_urlsafe(32)
    try:
        _preflight(keeper)
        # stored with the worker: after a service restart, a VM restart meanwhile still shows
        colab["runtime_started"] = keeper.started_at
        keeper.start()  # pings during the launch too: a long install must not idle it out
        url = _launch(keeper, request, secret)
        return attach(request, Target(name, "worker", url, secret, launched=True, colab=colab,
                                      client=client, keepalive=keeper), who)
    except BaseException:
        keeper.stop()
        try:  # a runtime nobody uses must not stay assigned (and billed)
            client.release(assignment.endpoint)
        except BridgeError as exc:
            current_app.logger.warning("could not release %s: %s", assignment.endpoint, exc)
        raise


def _launch(keeper: KeepAlive, request: ColabConnect, secret: str) -> str:
    """The wheel upload and the notebook through the runtime proxy. A refused proxy token (401 or
    an empty 404 before anything ran: expired or stale, colab-protocol.md) is renewed from the
    assignment list and the launch tried once more; a runtime the list no longer shows is gone.
    """
    for attempt in (1, 2):
        current = keeper.assignment
        try:
            runtime = RemoteRuntime.colab(current.proxy_url, current.proxy_token)
            return launch(runtime, request.launch, secret, field=None)[0]
        except ProxyTokenRefused as exc:
            if attempt == 2:
                raise BackendUnavailable(f"{exc.message}, and again with a token just renewed "
                                         "from Colab's assignment list", details=exc.details
                                         ) from exc
            try:
                keeper.renew()
            except NotFound as gone:
                raise BackendUnavailable(
                    f"Colab took runtime {current.endpoint} back during the launch ({gone.message})"
                    "; connect again", details={"reason": "gone"}) from gone
    raise AssertionError("unreachable")


def _preflight(keeper: KeepAlive) -> None:
    """The first keep-alive right after assign, as Google's CLI sends it; failing, the runtime is
    released (by the caller) and the user told why."""
    try:
        keeper.preflight()
    except BridgeError as exc:
        raise BackendUnavailable(
            f"Colab assigned runtime {keeper.assignment.endpoint} but refused its first "
            f"keep-alive ({exc.message}); it was released so it is not billed idle. Try again; "
            "if it keeps failing, Colab may have changed its keep-alive",
            details={"reason": "preflight", "upstream_status": exc.details.get("upstream_status")},
        ) from exc


def _authorization_required(request: ColabConnect, who: Identity,
                            reason: str | None = None) -> dict[str, Any]:
    redirect = request.redirect_uri or loopback_redirect()
    url = google_account.begin_sign_in(who.user_id, request.client_id, request.client_secret,
                                       redirect)
    answer = {"status": "authorization_required", "auth_url": url, "redirect_uri": redirect,
              "message": "Open auth_url in a browser on this machine and allow access; then "
                         "send this connect request again."}
    if reason:
        answer["reason"] = reason
    return answer


def loopback_redirect() -> str:
    """The OAuth redirect: this service on loopback, on the port it listens on, whatever host
    name the caller used (a Desktop-app client accepts any loopback port); ``--port 0``: the
    port the server was given, as the request arrived on it."""
    port = current_app.config["SETTINGS"].port or int(incoming.environ.get("SERVER_PORT") or 0)
    return f"http://127.0.0.1:{port}/api/v1/system/colab/callback"


def _manual(credentials: Any) -> dict[str, Any]:
    where = google_account.endpoints()
    with tempfile.TemporaryDirectory(prefix="bridge-upload-") as folder:
        upload = drive.upload_notebook(credentials, worker_notebook_path(folder),
                                       root_url=where.drive_root_url)
    return {"status": "notebook_uploaded", "colab_url": upload.colab_url,
            "file_id": upload.file_id,
            "message": "Open colab_url, pick a GPU runtime, fill in worker_secret, ngrok_token and "
                       "package_spec (a wheel or Git URL of this project), Run all, then connect "
                       "with the printed worker_url and your worker_secret."}

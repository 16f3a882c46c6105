"""Stored workers attached again: when the app starts, after a database restore, and when
another API instance attached one (shared.Shared.sync)."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from sqlalchemy import select

from bridge.errors import BridgeError, NotFound
from colab_runtime.colab import ColabClient
from local_api.remote import google_account
from local_api.remote.lifecycle import Attached, build_backend
from local_api.storage import schema

Remote = Any  # local_api.remote.workers.Remote (not imported: it imports this module)

log = logging.getLogger("compute_bridge.remote")


def restore(registry: Remote, *, probe: bool = True) -> list[str]:
    """Re-attach every stored worker not attached yet; returns their names."""
    with registry.app.extensions["db"].connect() as conn:
        rows = conn.execute(select(schema.workers)).mappings().all()
    added = []
    for row in rows:
        if not registry.reserve_stored(row["name"]):
            continue
        try:  # read again under the reservation: detached here meanwhile, it is gone
            row = _row(registry, row["name"])
            if row is not None and _reattach(registry, row):
                added.append(row["name"])
        finally:
            registry.settled(row["name"])
    if added and probe:
        threading.Thread(target=_probe, args=(registry, added), daemon=True).start()
    return added


def _row(registry: Remote, name: str) -> Any:
    with registry.app.extensions["db"].connect() as conn:
        return conn.execute(select(schema.workers).where(schema.workers.c.name == name)
                            ).mappings().first()


def _reattach(registry: Remote, row: Any) -> bool:
    box = registry.app.extensions["secret_box"]
    runtime = dict(row["runtime"] or {})
    try:
        secret = box.decrypt(row["secret_enc"]) if row["secret_enc"] else ""
        sealed = runtime.pop("url_enc", None)
        url = box.decrypt(sealed) if sealed else row["url"]
        backend = build_backend(row["name"], row["kind"], url, secret,
                                float(runtime.get("timeout") or 60))
        registry.router.add_worker(backend)
    except BridgeError as exc:
        log.error("cannot re-attach worker %s: %s", row["name"], exc.message)
        return False
    attached = Attached(row["name"], row["kind"], url, backend, runtime)
    registry.adopt(attached, row["created_at"])
    if attached.colab is not None:
        attached.client = colab_client(attached.colab, row["created_by"])
        registry.start_keepalive(attached)
    return True


def resync(registry: Remote) -> dict[str, list[str]]:
    """After a database restore: forget the attached workers, re-attach the stored ones.

    A worker attached now but absent from the restored database is no longer routed to
    (it keeps running; its Colab runtime is no longer kept alive).
    """
    before = registry.all()
    for attached in before:
        registry.drop(attached)
    with registry.app.app_context():
        registry.restore()
    after = registry.names()
    dropped = sorted(a.name for a in before if a.name not in after)
    for name in dropped:
        log.warning("worker %s is not in the restored database: no longer routed", name)
    return {"attached": after, "dropped": dropped}


def colab_client(colab: dict[str, Any], user_id: int | None) -> ColabClient | None:
    try:
        return google_account.colab_client_for(user_id, colab.get("notebook_hash"))
    except BridgeError as exc:
        log.warning("no keep-alive or release for Colab runtime %s (%s); sign in again",
                    colab.get("endpoint"), exc.message)
        return None


def _probe(registry: Remote, names: list[str]) -> None:
    for name in names:
        if registry.closed:
            return
        with contextlib.suppress(Exception):
            registry.router.probe_worker(name)


def detach_stored(registry: Remote, name: str, answer: dict[str, Any]) -> dict[str, Any]:
    """A row that is not attached (unreadable secret, a restored database): remove it."""
    row = _row(registry, name)
    if row is None:
        raise NotFound(f"no worker named {name!r} is attached", details={"worker": name})
    colab = (row["runtime"] or {}).get("colab")
    if isinstance(colab, dict):
        release(colab_client(colab, row["created_by"]), colab, answer)
    registry.delete_row(name)
    answer["warnings"].append("it was stored but not attached; its record was removed")
    return answer


def release(client: ColabClient | None, colab: dict[str, Any], answer: dict[str, Any]) -> None:
    warning = google_account.release_runtime(client, colab["endpoint"])
    if warning:
        answer["warnings"].append(warning)
    else:
        answer["released"] = colab["endpoint"]

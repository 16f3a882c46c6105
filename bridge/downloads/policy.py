"""What a non-admin may download: limits that keep one user from harming the others' models.

Registry ids (the default model among them) are what every user relies on, so a non-admin
may fetch them only from their registry source at the registry's revision (not a URL, a
look-alike repo or a pull-request revision); a URL must reach a public address; a path on
the service's machine is for admins. Admins may use any source.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from bridge.config import DEFAULT_MODEL_ID
from bridge.downloads.guard import non_public_address
from bridge.downloads.registry import REGISTRY
from bridge.downloads.sources import Source, requested_kind
from bridge.errors import Forbidden


def is_reserved(model_id: str) -> bool:
    """Ids every user relies on: the default model and the registry's."""
    return model_id == DEFAULT_MODEL_ID or model_id in REGISTRY


def check_user_request(model_id: str, body: dict[str, Any]) -> None:
    """Forbidden for what a non-admin may not ask: paths, other sources for registry ids."""
    kind = requested_kind(body)
    if kind == "path":
        raise Forbidden("Importing from a path on the service's machine needs an admin account",
                        details={"field": "path", "rule": "admin_only"})
    if is_reserved(model_id) and (kind != "registry" or body.get("revision")):
        raise Forbidden(f"{model_id!r} is a registry id that other users rely on: it may only be "
                        "downloaded from its registry source at its registry revision (admins "
                        "may use another source)",
                        details={"model_id": model_id, "rule": "registry_source_only"})


def check_public(source: Source) -> None:
    """Forbidden unless a URL's host resolves to public addresses only."""
    parts = urlsplit(source.location)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    address = non_public_address(parts.hostname or "", port)
    if address is not None:
        raise Forbidden(f"Downloads from {parts.hostname} ({address}) need an admin account: "
                        "a user's URL must point to a public address, not loopback, private "
                        "or link-local ones",
                        details={"field": "url", "rule": "public_address_only"})

"""Reading Colab's control-plane answers as the real service sends them (colab-protocol.md).

Read from Google's Colab CLI (googlecolab/google-colab-cli) and VS Code extension
(googlecolab/colab-vscode): an XSSI prefix, empty 204 bodies, integer ``variant`` and
``machineShape`` on the assign POST, an ``outcome`` (a number, or its name) instead of a
runtime, and 503/400 on assign.
"""

from __future__ import annotations

import json
from typing import Any

from bridge.errors import (
    BackendUnavailable,
    BridgeError,
    ColabAcceleratorUnavailable,
    ColabDenied,
    ColabNotEntitled,
    ColabQuotaExceeded,
    ValidationError,
)

XSSI_PREFIX = ")]}'\n"
VARIANTS: dict[str, frozenset[str]] = {
    "DEFAULT": frozenset({"NONE"}),
    "GPU": frozenset({"T4", "L4", "G4", "A100", "H100"}),
    "TPU": frozenset({"V2-8", "V5E1", "V6E1"}),
}
VARIANT_NAMES = {0: "DEFAULT", 1: "GPU", 2: "TPU"}  # the POST answer's integers
_OUTCOMES: dict[str, tuple[type[BridgeError], str]] = {
    "QUOTA_DENIED_REQUESTED_VARIANTS": (
        ColabQuotaExceeded, "Colab denies this account the requested accelerator for now "
        "(QUOTA_DENIED_REQUESTED_VARIANTS): try another accelerator or later"),
    "QUOTA_EXCEEDED_USAGE_TIME": (
        ColabQuotaExceeded, "this account used up its Colab usage time (QUOTA_EXCEEDED_USAGE_TIME)"
        ": wait until Colab grants time again, or use a paid plan"),
    "DENYLISTED": (ColabDenied, "Colab refuses runtimes to this account (DENYLISTED)"),
}
# The extension's Outcome enum (src/colab/client/v1/api.ts): the assign POST answers these
# numbers; 3 (QUOTA_EXCEEDED_USAGE_TIME_REFUND_MIGHT_UNBLOCK) is deprecated there and read as
# the usage-time quota it names.
OUTCOMES = {0: "UNDEFINED_OUTCOME", 1: "QUOTA_DENIED_REQUESTED_VARIANTS",
            2: "QUOTA_EXCEEDED_USAGE_TIME", 3: "QUOTA_EXCEEDED_USAGE_TIME", 4: "SUCCESS",
            5: "DENYLISTED"}


def assign_refusal(exc: BackendUnavailable, accelerator: str, variant: str,
                   eligible: list[str] | None = None) -> BridgeError:
    """The assign POST's 503 (none free now) and 400 (not entitled), as the extension reads them.

    On a 503 the VS Code extension tries the account's other eligible accelerators of the variant
    (user-info's ``eligibleAccelerators``): they are offered; ``eligible`` None (user-info not
    answered) offers the variant's accelerators, marked as not checked against the account.
    """
    status = exc.details.get("upstream_status")
    others = sorted(VARIANTS[variant] - {accelerator})
    if status == 503:
        checked = eligible is not None
        offer = [a for a in (eligible or others) if a != accelerator]
        hint = (f"this account may also use {', '.join(offer)}" if offer and checked else
                "this account has no other eligible accelerator of this kind" if checked else
                f"for example {', '.join(offer)}")
        return ColabAcceleratorUnavailable(
            f"Colab has no {accelerator} free right now: try another accelerator ({hint}) or "
            "later", details={"accelerator": accelerator, "alternatives": offer,
                              "alternatives_checked": checked})
    if status == 400:
        return ColabNotEntitled(
            f"this Google account is not entitled to a {accelerator} on Colab (a paid plan may "
            f"be needed): try {', '.join(others) or 'another accelerator'}",
            details={"accelerator": accelerator, "alternatives": others})
    return exc


_GAPI_VARIANTS = {"VARIANT_DEFAULT": "DEFAULT", "VARIANT_GPU": "GPU", "VARIANT_TPU": "TPU"}


def eligible_of(body: dict[str, Any], variant: str) -> list[str]:
    """The ``models`` of user-info's ``eligibleAccelerators`` entry for ``variant``
    (``VARIANT_GPU``...), as the VS Code extension's UserInfo schema reads them."""
    groups = body.get("eligibleAccelerators") or []
    if not isinstance(groups, list):
        raise BackendUnavailable("Colab answered a malformed user-info")
    found: list[str] = []
    for group in groups:
        if isinstance(group, dict) and _GAPI_VARIANTS.get(str(group.get("variant"))) == variant:
            found += [str(m) for m in group.get("models") or [] if isinstance(m, str)]
    return found


def check_outcome(body: dict[str, Any]) -> None:
    """An assign answer's ``outcome`` (quota, denylisted) is the user's to know, as such.

    ``outcome`` is a number in the extension's schema (1 QUOTA_DENIED_REQUESTED_VARIANTS,
    2 QUOTA_EXCEEDED_USAGE_TIME, 4 SUCCESS, 5 DENYLISTED) or its name; either is read. Raises
    ColabQuotaExceeded or ColabDenied (``details.outcome``: the name); any other outcome that
    comes without a runtime is BackendUnavailable naming it.
    """
    outcome = name_of(body.get("outcome"), OUTCOMES)
    if outcome in _OUTCOMES:
        cls, message = _OUTCOMES[outcome]
        raise cls(message, details={"outcome": outcome})
    if outcome and outcome != "SUCCESS" and not isinstance(body.get("runtimeProxyInfo"), dict):
        raise BackendUnavailable(f"Colab gave no runtime (outcome {outcome})",
                                 details={"outcome": outcome})


def name_of(value: Any, names: dict[int, str]) -> str:
    """A field that is a string on the GET and an integer on the POST."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return names.get(value, str(value))
    return str(value)


def parse(text: str) -> dict[str, Any]:
    body = text[len(XSSI_PREFIX):] if text.startswith(XSSI_PREFIX) else text
    if not body.strip():
        return {}  # release answers 204 / an empty body
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise BackendUnavailable(f"Colab answered malformed JSON: {body[:80]!r}") from exc
    if not isinstance(value, dict):
        raise BackendUnavailable(f"Colab answered JSON that is not an object: {body[:80]!r}")
    return value


def field(body: dict[str, Any], name: str, what: str) -> Any:
    value = body.get(name)
    if not value:
        raise BackendUnavailable(f"Colab answered a {what} without {name!r}")
    return value


def check_request(accelerator: str, variant: str) -> None:
    """Refuse an accelerator or variant Colab does not have, before any request."""
    if variant not in VARIANTS:
        raise ValidationError(
            f"unknown Colab variant {variant!r}; expected one of {sorted(VARIANTS)}"
        )
    if accelerator not in VARIANTS[variant]:
        raise ValidationError(
            f"accelerator {accelerator!r} does not fit variant {variant!r}; "
            f"expected one of {sorted(VARIANTS[variant])}"
        )


def check_endpoint(endpoint: str) -> str:
    """An endpoint fit to put in a /tun/m/ path (no slash, no dot segment)."""
    if not endpoint or "/" in endpoint or endpoint in (".", ".."):
        raise ValidationError(f"invalid Colab runtime endpoint {endpoint!r}")
    return endpoint

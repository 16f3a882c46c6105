"""Route metadata for the OpenAPI document, declared next to each view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RouteDoc:
    summary: str
    auth: str = "user"  # none | optional | user | admin
    body: dict[str, Any] | None = None
    query: tuple[str, ...] = ()
    status: int = 200


def spec(
    summary: str,
    *,
    auth: str = "user",
    body: dict[str, Any] | None = None,
    query: tuple[str, ...] = (),
    status: int = 200,
) -> Callable[[F], F]:
    """Attach documentation to a view; openapi.py reads it back."""

    def mark(view: F) -> F:
        view.__route_doc__ = RouteDoc(summary, auth, body, query, status)  # type: ignore[attr-defined]
        return view

    return mark

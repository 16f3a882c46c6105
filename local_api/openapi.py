"""The OpenAPI 3.1 document, built from the app's own routes and their `spec` metadata."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app

from local_api.docs import RouteDoc, spec

bp = Blueprint("openapi", __name__)

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "pattern": "^[A-Z_]+$"},
                "message": {"type": "string"},
                "details": {"type": "object"},
                "request_id": {"type": "string"},
            },
        }
    },
}
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer" if conv == "int" else "string"},
        }
        for conv, name in _CONVERTER.findall(rule)
    ]
    return _CONVERTER.sub(r"{\2}", rule), params


def _operation(doc: RouteDoc | None, endpoint: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    doc = doc or RouteDoc(summary=endpoint)
    op: dict[str, Any] = {
        "summary": doc.summary,
        "operationId": endpoint,
        "parameters": params
        + [
            {"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
            for q in doc.query
        ],
        "responses": {
            str(doc.status): {"description": "Success", "content": {"application/json": {}}},
            "default": {
                "description": "Error envelope",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if doc.auth in ("user", "admin"):
        op["security"] = [{"bearer": []}]
    elif doc.auth == "optional":
        op["security"] = [{}, {"bearer": []}]
    else:
        op["security"] = []
    if doc.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": doc.body}},
        }
    return op


def build(app: Flask) -> dict[str, Any]:
    """The document for every route the app serves (static files excepted)."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        doc = getattr(view, "__route_doc__", None)
        path, params = _path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(doc, rule.endpoint, params)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Compute Bridge", "version": "0.1.0"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/api/v1/openapi.json")
@spec("This OpenAPI document", auth="none")
def document() -> dict[str, Any]:
    return build(current_app)

"""The OpenAPI document describes every route the app serves."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient


def test_every_route_is_documented(app: Flask, client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        assert path in paths, f"{rule.rule} is missing from openapi.json"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operation = paths[path][method.lower()]
            view = app.view_functions[rule.endpoint]
            assert hasattr(view, "__route_doc__"), f"{rule.endpoint} has no @spec"
            assert operation["summary"]


def test_both_prefixes_are_served(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    for path in (
        "/api/auth/login",
        "/api/v1/auth/login",
        "/api/user/profile",
        "/api/v1/auth/refresh",
        "/api/auth/api-keys/{key_id}",
    ):
        assert path in document["paths"]


def test_request_schemas_are_the_ones_enforced(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    register = document["paths"]["/api/auth/register"]["post"]["requestBody"]
    schema = register["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"username", "email", "password"}
    assert schema["additionalProperties"] is False

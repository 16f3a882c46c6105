"""Checks of a launch's inputs before anything runs: the notebook's parameters, the runtime."""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import papermill

from bridge.errors import ValidationError

_JSON_SCALARS = (str, int, float, bool, type(None))
_DECLARED_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,),
    "list": (list, tuple),
}


def validate_runtime(runtime: Any) -> None:
    """A launch.RemoteRuntime: an http(s) URL, one-line headers, query and token."""
    if not runtime.url.startswith(("http://", "https://")):
        raise ValidationError(f"runtime_url must be http(s): {runtime.url!r}")
    token = [] if runtime.token is None else [("token", runtime.token)]
    for name, value in [*runtime.headers.items(), *runtime.ws_query.items(), *token]:
        if not all(isinstance(v, str) and "\r" not in v and "\n" not in v for v in (name, value)):
            raise ValidationError(f"runtime header or token {name!r} must be a one-line string")


def validate_parameters(source: Path, parameters: Mapping[str, Any]) -> None:
    if source.suffix != ".ipynb" or not source.is_file():
        raise ValidationError(f"not a notebook file: {source}")
    if not isinstance(parameters, Mapping):
        raise ValidationError("notebook parameters must be an object")
    declared = papermill.inspect_notebook(str(source))
    if not declared:
        raise ValidationError(f"{source.name} has no cell tagged 'parameters'")
    for name, value in parameters.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValidationError(f"parameter name {name!r} is not a Python identifier")
        if name not in declared:
            raise ValidationError(
                f"unknown parameter {name!r}; {source.name} declares {sorted(declared)}")
        if not _json_like(value):
            raise ValidationError(f"parameter {name!r} must be JSON-like, not {type(value)}")
        expected = _DECLARED_TYPES.get(str(declared[name].get("inferred_type_name")))
        if expected is not None and (not isinstance(value, expected) or (
            isinstance(value, bool) and bool not in expected)):
            raise ValidationError(
                f"parameter {name!r} must be {declared[name]['inferred_type_name']}, "
                f"not {type(value).__name__}")


def _json_like(value: Any) -> bool:
    if isinstance(value, _JSON_SCALARS):
        return not isinstance(value, float) or value == value  # NaN is not JSON
    if isinstance(value, list | tuple):
        return all(_json_like(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_like(v) for k, v in value.items())
    return False

"""Structured outputs and tools in the Python SDK: what goes into the native ``parameters``
and what comes back parsed.

``response_format``: ``"json"`` (any JSON object), a JSON Schema (a dict) or a pydantic model
class; the answer's ``.parsed`` is then the decoded JSON, or an instance of the model.
``tools``: dicts (OpenAI's ``{"type": "function", "function": {...}}`` or the function alone
``{"name", "description", "parameters"}``) or pydantic model classes (the class name is the
function's, its docstring the description, its JSON Schema the parameters); the answer's
``.tool_calls`` are ``ToolCall`` records ``{id, name, arguments: {...}}``. The service's own
shapes: local_api/generation/formats.py.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from bridge.errors import BridgeError


def _is_model(value: Any) -> bool:
    """A pydantic model class (duck-typed: the SDK does not depend on pydantic)."""
    return inspect.isclass(value) and hasattr(value, "model_json_schema") \
        and hasattr(value, "model_validate_json")  # fmt: skip


def _tool(tool: Any) -> dict[str, Any]:
    if _is_model(tool):
        fn: dict[str, Any] = {"name": tool.__name__, "parameters": tool.model_json_schema()}
        if inspect.getdoc(tool):
            fn["description"] = inspect.getdoc(tool)
        return fn
    if isinstance(tool, dict):
        return tool
    raise TypeError(f"a tool is a dict or a pydantic model class, not {type(tool).__name__}")


def parameters(response_format: Any = None, tools: Any = None, tool_choice: Any = None,
               parallel_tool_calls: bool | None = None) -> dict[str, Any]:  # fmt: skip
    """The native ``parameters`` entries for these options (None ones left out)."""
    out: dict[str, Any] = {}
    if response_format is not None:
        out["response_format"] = response_format.model_json_schema() \
            if _is_model(response_format) else response_format  # fmt: skip
    if tools is not None:
        out["tools"] = [_tool(t) for t in tools]
    if tool_choice is not None:
        out["tool_choice"] = tool_choice.__name__ if _is_model(tool_choice) else tool_choice
    if parallel_tool_calls is not None:
        out["parallel_tool_calls"] = parallel_tool_calls
    return out


def parse(text: str, response_format: Any, finish_reason: str | None) -> Any:
    """The answer's ``text`` as ``response_format`` asked: a model instance, or decoded JSON
    (None with no format or ``"text"``). BridgeError when the answer was cut by max_tokens
    (``finish_reason: "length"``: the JSON is not whole) or does not parse."""
    if response_format is None or response_format == "text":
        return None
    if finish_reason == "length":
        raise BridgeError("the answer was cut by max_tokens before its JSON was whole; raise "
                          "max_tokens", details={"finish_reason": "length"})  # fmt: skip
    try:
        if _is_model(response_format):
            return response_format.model_validate_json(text)
        return json.loads(text)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise BridgeError(f"the answer does not match the response format: {exc}"[:500],
                          details={"text": text[:200]}) from None  # fmt: skip

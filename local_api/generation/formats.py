"""Structured outputs and tools on the native surfaces (FT's /generate, AQ's /chat/completion,
/ws chat.stream), in their own naming, onto the pipeline's constraint and ToolSet.

In ``parameters`` (where FT and AQ put every generation option, API.md):

- ``response_format``: ``"text"`` (the default), ``"json"`` (any JSON object) or a JSON Schema
  object the answer must match (constrained decoding, bridge.structured);
- ``tools``: function tools, OpenAI's shape ``{"type": "function", "function": {"name",
  "description", "parameters"}}`` or the function alone ``{"name", ...}``;
- ``tool_choice``: ``"auto"`` (the default), ``"none"``, ``"required"`` or a function's name;
- ``parallel_tool_calls``: false allows one call at most.

Beside ``prompt``: ``tool_results`` ``[{"tool_call_id", "content"}]`` with the
``conversation_id`` answers the calls of that conversation's last turn (``prompt`` may then be
left out). An answer with calls carries ``tool_calls`` ``[{"id", "name", "arguments": {...}}]``
(arguments as an object) and ``finish_reason: "tool_calls"``. Bad input is a 400
``VALIDATION_ERROR`` whose ``details.field`` names the field (``parameters.tools[0].function
.name``). The checks and the decoding are the pipeline's own (local_api.generation.tools).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from bridge import params
from bridge.errors import ValidationError
from bridge.structured import ANY_OBJECT, schema_text
from bridge.types import GenerateRequest, Message, ToolCall
from local_api.generation import pipeline
from local_api.generation.tools import ToolSet, read_choice, read_tools
from local_api.validation import obj

PARAMETERS: dict[str, Any] = {**params.SCHEMA, "properties": {
    **params.SCHEMA["properties"],
    "response_format": {"anyOf": [{"enum": ["text", "json"]}, {"type": "object"}]},
    "tools": {"type": "array", "maxItems": 128},
    "tool_choice": {"anyOf": [{"type": "string"}, {"type": "object"}]},
    "parallel_tool_calls": {"type": "boolean"},
}}  # fmt: skip
TOOL_RESULTS = {"type": "array", "minItems": 1, "maxItems": 128, "items": obj({
    "tool_call_id": {"type": "string", "minLength": 1, "maxLength": 128},
    "content": {"type": "string", "maxLength": params.TEXT_MAX}}, ("tool_call_id", "content"))}
# how the native surfaces name the request's fields, for errors
NAMES = {name: f"parameters.{name}" for name in PARAMETERS["properties"]}
NAMES["messages"] = "prompt"


def _refuse(message: str, field: str) -> ValidationError:
    return ValidationError(message, details={"field": field})


def decode(body: dict[str, Any], model: str | None) -> tuple[GenerateRequest, ToolSet | None,
                                                             tuple[Message, ...]]:  # fmt: skip
    """A native body (``prompt``, ``parameters``, ``tool_results``) as the pipeline's request,
    its tools (None: none) and the turns the conversation stores (``()``: the prompt).
    ValidationError naming the field."""
    p = body.get("parameters") or {}
    prompt, results = body.get("prompt") or "", body.get("tool_results") or []
    if not prompt and not results:
        raise _refuse("prompt is required (or tool_results with a conversation_id)", "prompt")
    if results and not body.get("conversation_id"):
        raise _refuse("tool_results answer a conversation's tool calls: give its "
                      "conversation_id", "conversation_id")  # fmt: skip
    request = pipeline.request_from_parameters(model, prompt, p)
    turns = tuple(Message("tool", r["content"]) for r in results)
    if turns:
        request = replace(request, messages=(*turns, *request.messages[: 1 if prompt else 0]))
    fmt = p.get("response_format")
    if fmt not in (None, "text"):
        schema = ANY_OBJECT if fmt == "json" else schema_text(fmt, "parameters.response_format")
        request = replace(request, json_schema=schema)
    tools = read_tools(p.get("tools") or [], "parameters.tools", flat=True)
    choice = read_choice(p.get("tool_choice"), tools, "parameters.tool_choice")
    toolset = ToolSet(tools, choice, p.get("parallel_tool_calls") is not False) if tools else None
    if toolset is not None and toolset.active() and request.json_schema:
        raise _refuse("parameters.response_format cannot be used with tools the model may call "
                      "(tool_choice none allows it)", "parameters.response_format")  # fmt: skip
    stored = (*turns, *request.messages[len(turns):]) if turns else ()
    return request, toolset, stored


def call(event: ToolCall) -> dict[str, Any]:
    """One tool call in the native shape: ``{"id", "name", "arguments": {...}}``."""
    return {"id": event.id, "name": event.name, "arguments": json.loads(event.arguments)}


def calls(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A finished answer's tool calls in the native shape (from the pipeline's OpenAI-shaped
    ones)."""
    return [{"id": c["id"], "name": c["function"]["name"],
             "arguments": json.loads(c["function"]["arguments"])}
            for c in answer.get("tool_calls") or []]  # fmt: skip

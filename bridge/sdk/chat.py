"""AQ's chat completion and FT's generate in the SDK: their bodies (with the structured-output
and tool options of bridge.sdk.structured) and their answers, parsed."""

from __future__ import annotations

from typing import Any, TypeVar

from bridge.sdk import structured
from bridge.sdk.resources import V1, _Resource, compact, parameters_of
from bridge.sdk.stream import ChatStream
from bridge.sdk.types import Completion, Generation

R = TypeVar("R", Completion, Generation)


def native_body(prompt: str | None, model: tuple[str, str | None], *,
                parameters: dict[str, Any] | None, params: dict[str, Any],
                conversation_id: str | None, tool_results: list[dict[str, Any]] | None,
                response_format: Any, tools: Any, tool_choice: Any,
                parallel_tool_calls: bool | None) -> dict[str, Any]:  # fmt: skip
    """A native generation body (FT's ``model`` or AQ's ``model_id`` as ``model`` names it):
    prompt, parameters with the structured-output and tool options, tool results."""
    merged = {**parameters_of(parameters, params),
              **structured.parameters(response_format, tools, tool_choice, parallel_tool_calls)}
    return compact(prompt=prompt, **{model[0]: model[1]}, conversation_id=conversation_id,
                   parameters=merged or None, tool_results=tool_results)


def finish(answer: R, response_format: Any) -> R:
    """``answer`` with ``.parsed`` set as ``response_format`` asked (bridge.sdk.structured)."""
    answer.parsed = structured.parse(answer.text, response_format, answer.get("finish_reason"))
    return answer



class Chat(_Resource):
    """AQ's chat completion, whole or streamed token by token.

    ``response_format`` ("json", a JSON Schema dict or a pydantic model class) constrains the
    answer; ``.parsed`` is it decoded (a model instance for a model). ``tools`` (dicts or
    pydantic model classes), ``tool_choice`` ("auto", "none", "required" or a function's name)
    and ``parallel_tool_calls``: the answer's ``.tool_calls``; answer them with
    ``tool_results=[{"tool_call_id", "content"}]`` and the ``conversation_id``
    (bridge.sdk.structured)."""

    def completion(
        self,
        prompt: str | None = None,
        model_id: str | None = None,
        *,
        parameters: dict[str, Any] | None = None,
        conversation_id: str | None = None,
        response_format: Any = None,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        tool_results: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> Completion:
        """The answer: ``.completion``, ``.usage``, ``.backend``, ``.conversation_id``,
        ``.parsed``, ``.tool_calls``."""
        body = native_body(prompt, ("model_id", model_id), parameters=parameters,
                           params=params, conversation_id=conversation_id,
                           tool_results=tool_results, response_format=response_format,
                           tools=tools, tool_choice=tool_choice,
                           parallel_tool_calls=parallel_tool_calls)  # fmt: skip
        return finish(Completion(self._call("POST", "/chat/completion", json=body)),
                      response_format)  # fmt: skip

    def stream(
        self,
        prompt: str | None = None,
        model_id: str | None = None,
        *,
        parameters: dict[str, Any] | None = None,
        conversation_id: str | None = None,
        response_format: Any = None,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        tool_results: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> ChatStream:
        """Tokens as they come (NDJSON); ``.final`` is the Completion once it has ended
        (``.tool_calls`` of the stream fill as calls arrive)."""
        body = native_body(prompt, ("model_id", model_id), parameters=parameters,
                           params=params, conversation_id=conversation_id,
                           tool_results=tool_results, response_format=response_format,
                           tools=tools, tool_choice=tool_choice,
                           parallel_tool_calls=parallel_tool_calls)  # fmt: skip
        return self._client.open_stream(
            V1 + "/chat/completion", body,
            lambda event: finish(Completion(event), response_format))

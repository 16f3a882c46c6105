"""/v1/responses (OpenAI's Responses API, stateless), driven by the official ``openai`` client
over real HTTP; a FakeBackend (canned answers, a history of requests) stands behind the Router."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake

M = DEFAULT_MODEL_ID
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}  # fmt: skip


@pytest.fixture
def app(scripted_app: Flask) -> Flask:
    return scripted_app


def test_create_gives_a_response_and_output_text(oai: openai.OpenAI, fake: LocalFake) -> None:
    fake.queue("Paris is the capital.")
    done = oai.responses.create(model=M, input="Capital of France?", instructions="Be brief.",
                                max_output_tokens=40, temperature=0.3, store=False)  # fmt: skip
    assert done.object == "response" and done.status == "completed"
    assert done.id.startswith("resp_") and done.output_text == "Paris is the capital."
    assert done.output[0].type == "message" and done.store is False
    assert done.usage is not None and done.usage.output_tokens == 4
    assert done.usage.total_tokens == done.usage.input_tokens + 4
    sent = fake.history[-1]
    assert [(m.role, m.content) for m in sent.messages] == [
        ("system", "Be brief."), ("user", "Capital of France?")]
    assert sent.max_tokens == 40 and sent.temperature == 0.3


def test_a_cut_answer_is_incomplete(oai: openai.OpenAI, fake: LocalFake) -> None:
    fake.queue("one two three four five")
    done = oai.responses.create(model=M, input="Count.", max_output_tokens=2)
    assert done.status == "incomplete" and done.output_text == "one two"
    assert done.incomplete_details is not None
    assert done.incomplete_details.reason == "max_output_tokens"


def test_stream_gives_the_responses_events(oai: openai.OpenAI, fake: LocalFake) -> None:
    fake.queue("Hello there, friend.")
    events = list(oai.responses.create(model=M, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}], stream=True))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress",
                         "response.output_item.added"]  # fmt: skip
    assert kinds[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Hello there, friend."
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "Hello there, friend." and final.status == "completed"
    with oai.responses.stream(model=M, input="hi") as stream:  # the SDK's accumulating helper
        assert stream.get_final_response().output_text == "Hello from the fake backend."


def test_a_tool_loop_with_function_call_items(oai: openai.OpenAI, fake: LocalFake) -> None:
    fake.queue('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}',
               '{"response": "It is sunny in Oslo."}')  # fmt: skip
    ask: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = oai.responses.create(model=M, input=ask, tools=[WEATHER],  # type: ignore[list-item]
                                 tool_choice="required")
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"} and first.output_text == ""
    second = oai.responses.create(model=M, tools=[WEATHER], input=[  # type: ignore[list-item]
        *ask, call, {"type": "function_call_output", "call_id": call.call_id,
                     "output": "Sunny, 20 C"}])  # fmt: skip
    assert second.output_text == "It is sunny in Oslo."
    sent = fake.history[-1].messages
    assert json.loads(sent[-2].content)["tool_calls"] == [
        {"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert (sent[-1].role, sent[-1].content) == ("tool", "Sunny, 20 C")


def test_a_streamed_function_call(oai: openai.OpenAI, fake: LocalFake) -> None:
    fake.queue('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}')
    events = list(oai.responses.create(model=M, input="Weather in Rome?", tools=[WEATHER],  # type: ignore[list-item]
                                       tool_choice={"type": "function", "name": "get_weather"},
                                       stream=True))  # fmt: skip
    args = "".join(e.delta for e in events
                   if e.type == "response.function_call_arguments.delta")  # fmt: skip
    assert json.loads(args) == {"city": "Rome"}
    done = [e for e in events if e.type == "response.output_item.done"]
    assert done[-1].item.type == "function_call" and done[-1].item.status == "completed"  # type: ignore[union-attr]


def test_text_format_json_schema_reaches_the_backend(oai: openai.OpenAI, fake: LocalFake) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fake.queue('{"a": 3}')
    done = oai.responses.create(model=M, input="A number.", text={"format": {
        "type": "json_schema", "name": "n", "schema": schema, "strict": True}})
    assert json.loads(done.output_text) == {"a": 3}
    assert json.loads(fake.history[-1].json_schema) == schema


def test_reasoning_becomes_a_reasoning_item(oai: openai.OpenAI, fake: LocalFake) -> None:
    # a scripted backend: no small thinking model is available offline
    fake.queue("<think>Greeting back.</think>\n\nHello!")
    done = oai.responses.create(model=M, input="hi")
    assert [item.type for item in done.output] == ["reasoning", "message"]
    assert done.output[0].content[0].text == "Greeting back."  # type: ignore[union-attr,index]
    assert done.output_text == "Hello!"
    fake.queue("<think>Again.</think> Hi.")
    events = list(oai.responses.create(model=M, input="hi", stream=True))
    thought = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert thought == "Again." and events[-1].response.output_text == "Hi."  # type: ignore[union-attr]


def test_errors_use_openais_shape(oai: openai.OpenAI, live_server: LiveServer, key: str) -> None:
    with pytest.raises(openai.BadRequestError) as stateful:
        oai.responses.create(model=M, input="hi", previous_response_id="resp_123")
    assert stateful.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert "stateless" in stateful.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        oai.responses.create(model=M, input="hi", max_output_tokens=0)
    assert bad.value.body["param"] == "max_output_tokens"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as missing:
        oai.responses.create(model="no-such-model", input="hi")
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}) as h:
        tool = h.post("/v1/responses", json={"input": "hi", "tools": [{"type": "web_search"}]})
        item = h.post("/v1/responses", json={"input": [{"type": "image_generation_call"}]})
        empty = h.post("/v1/responses", json={"model": M})
    for answer, param in ((tool, "tools[0].type"), (item, "input[0].type"), (empty, None)):
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_a_failure_after_the_first_byte_is_an_error_event(oai: openai.OpenAI,
                                                          fake: LocalFake) -> None:  # fmt: skip
    fake.queue("one two three four five six")
    fake.die_after = 2
    with pytest.raises(openai.APIError) as failed:  # noqa: PT012
        for _event in oai.responses.create(model=M, input="hi", stream=True):
            pass
    assert "died" in failed.value.message


def test_bad_schemas_are_named_as_responses_names_them(oai: openai.OpenAI, fake: LocalFake,
                                                      live_server: LiveServer, key: str) -> None:
    bad = {"type": "nope"}
    with pytest.raises(openai.BadRequestError) as tool:
        oai.responses.create(model=M, input="hi", tools=[  # type: ignore[list-item]
            {"type": "function", "name": "get_weather", "parameters": bad}])
    with pytest.raises(openai.BadRequestError) as fmt:
        oai.responses.create(model=M, input="hi", text={"format": {  # type: ignore[typeddict-item]
            "type": "json_schema", "name": "city", "schema": bad}})
    assert tool.value.body["param"] == "tools[0].parameters"  # type: ignore[index]
    assert fmt.value.body["param"] == "text.format.schema"  # type: ignore[index]
    assert "response_format" not in fmt.value.body["message"]  # type: ignore[index]
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}) as h:
        nameless = h.post("/v1/responses", json={"input": "hi", "tools": [{"type": "function"}]})
        unnamed = h.post("/v1/responses", json={"input": "hi", "text": {"format": {
            "type": "json_schema", "schema": {"type": "object"}}}})  # fmt: skip
    assert nameless.json()["error"]["param"] == "tools[0].name", nameless.text
    assert unnamed.json()["error"]["param"] == "text.format.name", unnamed.text
    assert not fake.history

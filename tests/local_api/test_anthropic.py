"""/v1/messages in Anthropic's dialect, driven by the official ``anthropic`` client over real
HTTP; a FakeBackend (canned answers, a history of requests) stands behind the Router."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake

M = DEFAULT_MODEL_ID
HI = [{"role": "user", "content": "hi"}]
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}  # fmt: skip


@pytest.fixture
def app(scripted_app: Flask) -> Flask:
    return scripted_app


@pytest.fixture
def claude(live_server: LiveServer, key: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=live_server.url, api_key=key, max_retries=0,
                             timeout=30) as client:  # fmt: skip
        yield client


def test_create_sends_x_api_key_and_gets_a_message(claude: anthropic.Anthropic,
                                                   fake: LocalFake) -> None:  # fmt: skip
    fake.queue("Paris is the capital.")
    done = claude.messages.create(model=M, max_tokens=50, system="Be brief.",
                                  messages=[{"role": "user", "content": "Capital of France?"}],
                                  stop_sequences=["END"],
                                  extra_body={"temperature": 0.2})  # fmt: skip
    assert done.type == "message" and done.role == "assistant" and done.id.startswith("msg_")
    assert done.content[0].type == "text" and done.content[0].text == "Paris is the capital."
    assert done.stop_reason == "end_turn" and done.usage.output_tokens == 4
    sent = fake.history[-1]
    assert [(m.role, m.content) for m in sent.messages] == [
        ("system", "Be brief."), ("user", "Capital of France?")]
    assert sent.stop == ("END",) and sent.temperature == 0.2 and sent.max_tokens == 50


def test_max_tokens_stops_with_max_tokens(claude: anthropic.Anthropic, fake: LocalFake) -> None:
    fake.queue("one two three four five")
    done = claude.messages.create(model=M, max_tokens=2, messages=HI)  # type: ignore[arg-type]
    assert done.stop_reason == "max_tokens" and done.content[0].text == "one two"  # type: ignore[union-attr]


def test_stream_gives_anthropics_events(claude: anthropic.Anthropic, fake: LocalFake) -> None:
    fake.queue("Hello there, friend.")
    with claude.messages.stream(model=M, max_tokens=50, messages=HI) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop",
            "message_delta"} <= set(kinds)  # fmt: skip
    assert final.content[0].text == "Hello there, friend."  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 3


def test_a_tool_loop_goes_through_the_pipelines_tools(claude: anthropic.Anthropic,
                                                      fake: LocalFake) -> None:  # fmt: skip
    fake.queue('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}',
               '{"response": "It is sunny in Oslo."}')  # fmt: skip
    ask = [{"role": "user", "content": "Weather in Oslo?"}]
    first = claude.messages.create(model=M, max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
                                   tool_choice={"type": "any"}, messages=ask)  # type: ignore[arg-type]
    use = first.content[0]
    assert first.stop_reason == "tool_use" and use.type == "tool_use"
    assert use.name == "get_weather" and use.input == {"city": "Oslo"}
    assert use.id.startswith("toolu_")
    schema = json.loads(fake.history[-1].json_schema)
    assert "response" not in json.dumps(schema)  # "any": a call is forced by the grammar
    second = claude.messages.create(
        model=M, max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
        messages=[*ask, {"role": "assistant", "content": first.content},  # type: ignore[list-item]
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                "content": "Sunny, 20 C"}]}])  # fmt: skip
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "It is sunny in Oslo."  # type: ignore[union-attr]
    sent = fake.history[-1].messages
    assert json.loads(sent[-2].content)["tool_calls"][0] == {"name": "get_weather",
                                                             "arguments": {"city": "Oslo"}}
    assert (sent[-1].role, sent[-1].content) == ("tool", "Sunny, 20 C")


def test_a_streamed_tool_use_arrives_as_input_json(claude: anthropic.Anthropic,
                                                   fake: LocalFake) -> None:  # fmt: skip
    fake.queue('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}')
    with claude.messages.stream(model=M, max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=HI) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Rome"}


def test_thinking_becomes_a_thinking_block(claude: anthropic.Anthropic, fake: LocalFake) -> None:
    # a scripted backend: no small thinking model is available offline
    fake.queue("<think>The user greets me.</think>\n\nHello!")
    done = claude.messages.create(model=M, max_tokens=50, messages=HI)  # type: ignore[arg-type]
    assert [b.type for b in done.content] == ["thinking", "text"]
    assert done.content[0].thinking == "The user greets me."  # type: ignore[union-attr]
    assert done.content[1].text == "Hello!"  # type: ignore[union-attr]
    fake.queue("<think>Still greeting.</think> Hi again.")
    with claude.messages.stream(model=M, max_tokens=50, messages=HI) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.content[0].thinking == "Still greeting."  # type: ignore[union-attr]
    assert final.content[1].text == "Hi again."  # type: ignore[union-attr]


def test_errors_use_anthropics_shape(claude: anthropic.Anthropic, live_server: LiveServer,
                                     key: str) -> None:  # fmt: skip
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model=M, max_tokens=0, messages=HI)  # type: ignore[arg-type]
    assert bad.value.body["type"] == "error"  # type: ignore[index]
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in bad.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="no-such-model", max_tokens=5, messages=HI)  # type: ignore[arg-type]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError) as denied, anthropic.Anthropic(
            base_url=live_server.url, api_key="cb_wrong", max_retries=0) as stranger:  # fmt: skip
        stranger.messages.create(model=M, max_tokens=5, messages=HI)  # type: ignore[arg-type]
    assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert "cb_wrong" not in json.dumps(denied.value.body)
    with httpx.Client(base_url=live_server.url) as http:
        raw = http.post("/v1/messages", content=b"{not json", headers={
            "x-api-key": key, "anthropic-version": "2023-06-01",
            "content-type": "application/json"})  # fmt: skip
        image = http.post("/v1/messages", headers={"x-api-key": key}, json={
            "model": M, "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "data": "AA"}}]}]})
        bad_tool = http.post("/v1/messages", headers={"x-api-key": key}, json={
            "model": M, "max_tokens": 5, "messages": HI,
            "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}})
        wrong = http.get("/v1/messages", headers={"x-api-key": key})
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert wrong.json()["error"]["type"] == "invalid_request_error"
    for answer in (raw, image, bad_tool):
        assert answer.status_code == 400, answer.text
        assert answer.json()["type"] == "error", answer.text
        assert answer.json()["error"]["type"] == "invalid_request_error"
    assert "image" in image.json()["error"]["message"]


def test_count_tokens_counts_with_the_models_tokenizer(claude: anthropic.Anthropic) -> None:
    # the fake's tokenizer: one token a word (the real model's: tests/end_to_end)
    plain = claude.messages.count_tokens(model=M, system="Be brief.", messages=[
        {"role": "user", "content": "one two three"}])
    assert plain.input_tokens == 5
    tooled = claude.messages.count_tokens(model=M, messages=HI, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    assert tooled.input_tokens > 10  # the tools are stated in the prompt: they count
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.count_tokens(model="no-such-model", messages=HI)  # type: ignore[arg-type]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_a_failure_after_the_first_byte_is_an_error_event(claude: anthropic.Anthropic,
                                                          fake: LocalFake) -> None:  # fmt: skip
    fake.queue("one two three four five six")
    fake.die_after = 2
    with pytest.raises(anthropic.APIStatusError) as failed, claude.messages.stream(  # noqa: PT012
            model=M, max_tokens=50, messages=HI) as stream:  # type: ignore[arg-type]  # fmt: skip
        for _event in stream:
            pass
    assert failed.value.body["error"]["type"] in ("overloaded_error", "api_error")  # type: ignore[index]


def test_x_api_key_is_an_api_key_everywhere(live_server: LiveServer, key: str) -> None:
    with httpx.Client(base_url=live_server.url) as http:
        me = http.get("/api/v1/user/profile", headers={"x-api-key": key})
        wrong = http.get("/api/v1/user/profile", headers={"x-api-key": "cb_wrong"})
        both = http.get("/api/v1/user/profile", headers={"x-api-key": "cb_wrong",
                                                    "Authorization": f"Bearer {key}"})
    assert me.status_code == 200 and me.json()["user"]["username"] == "alice", me.text
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UNAUTHORIZED"
    assert both.status_code == 200  # Authorization wins, as before


def test_a_bad_input_schema_is_named_as_anthropic_names_it(claude: anthropic.Anthropic,
                                                           fake: LocalFake) -> None:  # fmt: skip
    bad = {"name": "get_weather", "input_schema": {"type": "nope"}}
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model=M, max_tokens=5, messages=HI,  # type: ignore[arg-type]
                               tools=[bad])  # type: ignore[list-item]
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("tools[0].input_schema is not a valid JSON Schema"), message
    assert "function.parameters" not in message and not fake.history


def test_a_missing_key_names_the_header_the_sdk_sends(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as http:
        answer = http.post("/v1/messages", json={"model": M, "max_tokens": 5, "messages": HI})
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "authentication_error"
    assert "x-api-key" in answer.json()["error"]["message"], answer.text


def test_tool_choice_any_without_tools_is_refused(claude: anthropic.Anthropic,
                                                  fake: LocalFake) -> None:  # fmt: skip
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model=M, max_tokens=5, messages=HI,  # type: ignore[arg-type]
                               tool_choice={"type": "any"})
    assert "tool_choice" in refused.value.body["error"]["message"]  # type: ignore[index]
    assert not fake.history

// Structured outputs and tool calls against a real service on the real default model: the
// npm `openai` package on /v1 with only a base URL and a key (response_format json_schema,
// tools with a forced function, streamed tool-call deltas reassembled by index), and this
// SDK's responseFormat, tools and toolResults on the native API.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import OpenAI from "openai";
import { Client, ValidationError } from "compute-bridge";
import { DEFAULT_MODEL, startService } from "./service.js";

let service;
let client;
let openai;

before(async () => {
  service = await startService();
  client = new Client(service.apiKey, { baseUrl: service.url, timeout: 300_000 });
  openai = new OpenAI({ baseURL: `${service.url}/v1`, apiKey: service.apiKey, maxRetries: 0,
    timeout: 300_000 });
});

after(async () => {
  await service?.stop();
});

const CITY = {
  type: "object",
  properties: { name: { type: "string" }, country: { type: "string" } },
  required: ["name", "country"],
  additionalProperties: false,
};
const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather of a city now",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const ASK = [{ role: "user", content: "What is the weather in Paris?" }];

describe("npm openai on /v1", () => {
  test("response_format json_schema gives a schema-valid object", { timeout: 300_000 }, async () => {
    const done = await openai.chat.completions.create({
      model: DEFAULT_MODEL, temperature: 0, max_tokens: 80,
      messages: [{ role: "user", content: "Describe Paris as JSON." }],
      response_format: { type: "json_schema", json_schema: { name: "city", schema: CITY, strict: true } },
    });
    assert.equal(done.choices[0].finish_reason, "stop");
    const city = JSON.parse(done.choices[0].message.content);
    assert.deepEqual(Object.keys(city).sort(), ["country", "name"]);
    assert.equal(typeof city.name, "string");
  });

  test("a forced function streams deltas that reassemble; a second turn answers in text",
    { timeout: 300_000 }, async () => {
      const calls = new Map();
      let finish = null;
      const stream = await openai.chat.completions.create({
        model: DEFAULT_MODEL, messages: ASK, tools: [WEATHER], temperature: 0, max_tokens: 100,
        tool_choice: { type: "function", function: { name: "get_weather" } }, stream: true,
        parallel_tool_calls: false,
      });
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (!choice) continue;
        finish = choice.finish_reason ?? finish;
        for (const delta of choice.delta.tool_calls ?? []) {
          const entry = calls.get(delta.index) ?? { id: "", name: "", arguments: "" };
          if (delta.id) { // id and name come first, argument fragments after
            assert.equal(entry.arguments, "");
            entry.id = delta.id;
            entry.name = delta.function?.name ?? "";
          }
          entry.arguments += delta.function?.arguments ?? "";
          calls.set(delta.index, entry);
        }
      }
      assert.equal(finish, "tool_calls");
      assert.deepEqual([...calls.keys()], [0]);
      const call = calls.get(0);
      assert.equal(call.name, "get_weather");
      assert.ok(call.id.startsWith("call_"));
      assert.equal(typeof JSON.parse(call.arguments).city, "string");
      const second = await openai.chat.completions.create({
        model: DEFAULT_MODEL, tools: [WEATHER], tool_choice: "none", temperature: 0, max_tokens: 40,
        messages: [...ASK,
          { role: "assistant", content: null, tool_calls: [{ id: call.id, type: "function",
            function: { name: call.name, arguments: call.arguments } }] },
          { role: "tool", tool_call_id: call.id, content: "Sunny, 21 C" }],
      });
      assert.ok(second.choices[0].message.content?.trim());
      assert.ok(!second.choices[0].message.tool_calls?.length);
    });
});

describe("the SDK's responseFormat and tools", () => {
  test("a JSON Schema in, parsed out; tools in, tool calls out, results answered",
    { timeout: 300_000 }, async () => {
      const city = await client.chat.completion({ prompt: "Describe Paris as JSON.",
        responseFormat: CITY, temperature: 0, maxTokens: 80 });
      assert.equal(typeof city.parsed.name, "string");
      assert.equal(typeof city.parsed.country, "string");
      const stream = client.chat.stream({ prompt: "Describe Paris as JSON.",
        responseFormat: CITY, temperature: 0, maxTokens: 80 });
      const streamed = await stream.finalAnswer();
      assert.deepEqual(streamed.parsed, JSON.parse(stream.text));
      assert.deepEqual(Object.keys(streamed.parsed).sort(), ["country", "name"]);
      const generated = await client.generate({ prompt: "Describe Paris as JSON.", stream: true,
        responseFormat: CITY, temperature: 0, maxTokens: 80 }).finalAnswer();
      assert.deepEqual(generated.parsed, JSON.parse(generated.response));
      const cut = client.chat.stream({ prompt: "Describe Paris as JSON.", responseFormat: CITY,
        temperature: 0, maxTokens: 3 });
      await assert.rejects(cut.finalAnswer(), /cut by maxTokens/);
      const first = await client.generate({ prompt: "What is the weather in Paris?",
        tools: [WEATHER], toolChoice: "get_weather", temperature: 0, maxTokens: 100 });
      assert.equal(first.finishReason, "tool_calls");
      const [call] = first.toolCalls;
      assert.equal(call.name, "get_weather");
      assert.equal(typeof call.arguments.city, "string");
      const second = await client.generate({ conversationId: first.conversationId,
        tools: [WEATHER], toolChoice: "none", temperature: 0, maxTokens: 40,
        toolResults: [{ toolCallId: call.id, content: "Sunny, 21 C" }] });
      assert.ok(second.response.trim());
      assert.equal(second.toolCalls, undefined);
    });

  test("the socket's chatStream takes tools and responseFormat: the call arrives, the final frame has it and parsed",
    { timeout: 300_000 }, async (t) => {
      const socket = await client.socket();
      t.after(() => socket.close());
      const stream = socket.chatStream({ prompt: "What is the weather in Oslo?", tools: [WEATHER],
        toolChoice: "required", parallelToolCalls: false, temperature: 0, maxTokens: 100 });
      const final = await stream.finalAnswer();
      assert.equal(final.finishReason, "tool_calls");
      assert.deepEqual(stream.toolCalls, final.toolCalls);
      assert.equal(stream.toolCalls[0].name, "get_weather");
      assert.equal(typeof stream.toolCalls[0].arguments.city, "string");
      const city = socket.chatStream({ prompt: "Describe Paris as JSON.", responseFormat: CITY,
        temperature: 0, maxTokens: 80 });
      const described = await city.finalAnswer();
      assert.deepEqual(described.parsed, JSON.parse(city.text));
    });

  test("an unknown toolChoice is a ValidationError naming the field", async () => {
    await assert.rejects(
      client.chat.completion({ prompt: "x", tools: [WEATHER], toolChoice: "get_time" }),
      (exc) => exc instanceof ValidationError && exc.status === 400
        && exc.details.field === "parameters.tool_choice");
  });
});

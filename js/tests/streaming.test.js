// Streaming against a real service: NDJSON over fetch and the WebSocket /ws, cancellation,
// error frames, and connections cut mid-stream (raised once).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  BridgeError,
  Client,
  ModelNotFound,
  ServiceUnreachable,
  Unauthorized,
  ValidationError,
} from "compute-bridge";
import { DEFAULT_MODEL, cuttableProxy, startService } from "./service.js";

// Sampled, not greedy: deterministic requests are answered from the service's cache.
const SMALL = { maxTokens: 12 };
const PROMPT = "Name three colours.";

let service;
let client;

before(async () => {
  service = await startService();
  client = new Client(service.apiKey, { baseUrl: service.url });
}, { timeout: 300_000 });

after(async () => {
  await service?.stop();
});

function isAbort(exc) {
  return exc?.name === "AbortError";
}

describe("HTTP streaming (NDJSON over fetch)", () => {
  test("chat.stream: tokens as an async iterator, then the final answer", async () => {
    const stream = client.chat.stream({ prompt: PROMPT, modelId: DEFAULT_MODEL, parameters: SMALL });
    const tokens = [];
    for await (const token of stream) tokens.push(token);
    assert.ok(tokens.length > 0);
    assert.deepEqual(stream.tokens, tokens);
    assert.equal(stream.text, tokens.join(""));
    assert.equal(stream.final.completion, tokens.join(""));
    assert.equal(stream.final.modelId, DEFAULT_MODEL);
    assert.equal(stream.final.backend, "local");
    assert.match(stream.final.conversationId, /^conv_/);
    assert.ok(stream.final.usage.completionTokens <= 12);
    assert.equal((await stream.next()).done, true); // ended for good
  });

  test("FT's generate streams too; finalAnswer() reads to the end", async () => {
    const final = await client.generate({ prompt: PROMPT, maxTokens: 6, stream: true }).finalAnswer();
    assert.equal(typeof final.response, "string");
    assert.equal(final.model, DEFAULT_MODEL);
    assert.ok(final.usage.tokens <= 6);
  });

  test("an error before the first token is the typed error", async () => {
    await assert.rejects(async () => {
      for await (const _token of client.chat.stream({ prompt: "Hi", modelId: "llama-9000" })) {
        assert.fail("no token");
      }
    }, ModelNotFound);
    await assert.rejects(client.chat.stream({ prompt: "" }).finalAnswer(), ValidationError);
  });

  test("leaving the loop ends quietly and closes the connection", async () => {
    const stream = client.chat.stream({ prompt: PROMPT, ...SMALL });
    for await (const _token of stream) break;
    assert.equal(stream.tokens.length, 1);
    assert.equal(stream.final, undefined);
    assert.equal((await stream.next()).done, true);
  });

  test("cancellable with an AbortSignal", async () => {
    const controller = new AbortController();
    const stream = client.chat.stream({ prompt: PROMPT, ...SMALL, signal: controller.signal });
    let seen = 0;
    const exc = await (async () => {
      for await (const _token of stream) {
        seen += 1;
        controller.abort();
      }
    })().then(() => undefined, (e) => e);
    assert.ok(isAbort(exc), String(exc));
    assert.equal(seen, 1);
    assert.equal(stream.final, undefined);
    assert.equal((await stream.next()).done, true);

    const early = new AbortController();
    early.abort();
    await assert.rejects(client.chat.stream({ prompt: PROMPT, signal: early.signal }).finalAnswer(), isAbort);

    const whole = new AbortController();
    const pending = client.chat.completion({ prompt: PROMPT, maxTokens: 16, signal: whole.signal });
    setTimeout(() => whole.abort(), 50);
    await assert.rejects(pending, isAbort);

    // the client goes on working
    assert.ok((await client.chat.completion({ prompt: "Hi", maxTokens: 2 })).completion !== undefined);
  });

  test("a connection cut mid-stream raises ServiceUnreachable, once", async (t) => {
    const proxy = await cuttableProxy(service.port);
    t.after(() => proxy.close());
    const viaProxy = new Client(service.apiKey, { baseUrl: proxy.url });
    const stream = viaProxy.chat.stream({ prompt: PROMPT, ...SMALL });
    const errors = [];
    let tokens = 0;
    try {
      for await (const _token of stream) {
        tokens += 1;
        proxy.cut();
      }
    } catch (exc) {
      errors.push(exc);
    }
    assert.equal(errors.length, 1, `tokens ${JSON.stringify(stream.tokens)}, final ${JSON.stringify(stream.final)}`);
    assert.ok(errors[0] instanceof ServiceUnreachable, String(errors[0]));
    assert.match(errors[0].message, /cut|ended before its final line/);
    assert.equal(errors[0].details.tokensReceived, tokens);
    assert.equal((await stream.next()).done, true); // raised once, then simply done
  });
});

describe("WebSocket /ws (the ws package in Node)", () => {
  test("chat.stream: tokens, the final frame, and a chat_update push", async (t) => {
    const socket = await client.socket();
    t.after(() => socket.close());
    const updates = [];
    socket.on("chat_update", (data) => updates.push(data));
    const stream = socket.chatStream({ prompt: PROMPT, modelId: DEFAULT_MODEL, parameters: SMALL });
    const tokens = [];
    for await (const token of stream) tokens.push(token);
    assert.ok(tokens.length > 0);
    assert.equal(stream.final.completion, tokens.join(""));
    assert.equal(stream.final.backend, "local");
    assert.ok(stream.final.usage.completionTokens <= 12);
    const conversationId = stream.final.conversationId;
    assert.match(conversationId, /^conv_/);
    await socket.ping();
    const ours = () => updates.some((u) => u.conversationId === conversationId);
    for (let i = 0; i < 50 && !ours(); i += 1) await new Promise((r) => setTimeout(r, 100));
    assert.ok(updates.some((u) => u.conversationId === conversationId
      && u.message.role === "assistant"), JSON.stringify(updates));
    assert.equal(typeof socket._ws.on, "function"); // the ws package: the token went in a header
  });

  test("chats on one socket stream at once, each by its id; an aborted one is cancelled", async (t) => {
    const socket = await client.socket();
    t.after(() => socket.close());
    const cancelled = [];
    socket.on("chat.cancelled", (data) => cancelled.push(data));
    const errors = [];
    socket.on("error", (exc) => errors.push(exc));
    const controller = new AbortController();
    const long = { prompt: "Tell me a long story about a lighthouse.", maxTokens: 200 };
    const first = socket.chatStream({ ...long, signal: controller.signal });
    const second = socket.chatStream({ prompt: "Say hello.", maxTokens: 4 });
    await assert.rejects(async () => {
      for await (const _token of first) controller.abort();
    }, isAbort);
    assert.equal(first.tokens.length, 1);
    const final = await second.finalAnswer();
    assert.equal(final.completion, second.text);
    assert.ok(final.usage.completionTokens <= 4);
    for (let i = 0; i < 50 && !cancelled.length; i += 1) await new Promise((r) => setTimeout(r, 100));
    assert.equal(cancelled.length, 1, "the service said it stopped the aborted chat");
    assert.ok(cancelled[0].tokens >= 1 && cancelled[0].tokens < 100, JSON.stringify(cancelled));
    assert.deepEqual(errors, []);
  });

  test("error frames: typed, and the socket stays open", async (t) => {
    const socket = await client.socket();
    t.after(() => socket.close());
    const errors = [];
    socket.on("error", (exc) => errors.push(exc));
    socket.send("launch.missiles", {});
    await socket.ping();
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof ValidationError && errors[0] instanceof BridgeError);
    assert.equal(errors[0].code, "VALIDATION_ERROR");
    await assert.rejects(socket.chatStream({ prompt: "Hi", modelId: "llama-9000" }).finalAnswer(), ModelNotFound);
    assert.equal(errors.length, 1); // a chat's error goes to that chat
    assert.ok(socket.open);
    assert.ok((await socket.chatStream({ prompt: "Hi", maxTokens: 2 }).finalAnswer()).completion !== undefined);
  });

  test("system.status subscription", async (t) => {
    const socket = await client.socket();
    t.after(() => socket.close());
    const pushes = [];
    for await (const push of socket.systemStatus({ interval: 0.2 })) {
      pushes.push(push);
      if (pushes.length === 2) break; // sends interval: 0
    }
    for (const push of pushes) {
      assert.equal(typeof push.resources.cpu, "number");
      assert.ok(push.resources.memory > 0);
      assert.ok("gpu" in push.resources);
      assert.equal(push.status.backends[0].name, "local");
    }
  });

  test("model_status pushes during a load", async (t) => {
    const socket = await client.socket();
    t.after(() => socket.close());
    const statuses = [];
    socket.on("model_status", (data) => statuses.push(data));
    await socket.ping(); // subscribed before the load starts
    await client.models.load(DEFAULT_MODEL);
    for (let i = 0; i < 50 && statuses.length < 2; i += 1) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(statuses.map((s) => s.status), ["loading", "loaded"]);
    assert.equal(statuses.at(-1).modelId, DEFAULT_MODEL);
    assert.equal(statuses.at(-1).progress, 1);
  });

  test("a refused token is Unauthorized", async () => {
    await assert.rejects(new Client("cb_not_a_key", { baseUrl: service.url }).socket(), Unauthorized);
  });

  test("a socket cut mid-chat raises ServiceUnreachable, once", async (t) => {
    const proxy = await cuttableProxy(service.port);
    t.after(() => proxy.close());
    const socket = await new Client(service.apiKey, { baseUrl: proxy.url }).socket();
    const stream = socket.chatStream({ prompt: PROMPT, ...SMALL });
    const errors = [];
    try {
      for await (const _token of stream) proxy.cut();
    } catch (exc) {
      errors.push(exc);
    }
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof ServiceUnreachable, String(errors[0]));
    assert.equal((await stream.next()).done, true);
    await socket.closed;
    assert.equal(socket.open, false);
  });
});

// client.embeddings against a real service: the default embedding model (all-MiniLM-L6-v2),
// nearest neighbours that make sense, and the errors a notebook meets.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Client, ModelTypeMismatch, ValidationError } from "compute-bridge";
import { DEFAULT_MODEL, startService } from "./service.js";

let service;
let client;

before(async () => {
  service = await startService();
  client = new Client(service.apiKey, { baseUrl: service.url });
});

after(async () => {
  await service?.stop();
});

const dot = (a, b) => a.reduce((sum, x, i) => sum + x * b[i], 0);

describe("embeddings", () => {
  test("vectors, usage, and the nearest text is the related one", { timeout: 240_000 }, async () => {
    const docs = ["Paris is the capital of France.", "Bananas are rich in potassium."];
    const answer = await client.embeddings.create(["Which city is France's capital?", ...docs]);
    assert.equal(answer.model, "all-minilm-l6-v2");
    assert.equal(answer.dimensions, 384);
    assert.deepEqual(answer.embeddings.map((v) => v.length), [384, 384, 384]);
    assert.ok(Math.abs(dot(answer.embeddings[0], answer.embeddings[0]) - 1) < 1e-4);
    const [query, paris, bananas] = answer.embeddings;
    assert.ok(dot(query, paris) > dot(query, bananas) + 0.2, `${dot(query, paris)} ${dot(query, bananas)}`);
    assert.ok(answer.usage.promptTokens > 10 && answer.usage.totalTokens === answer.usage.promptTokens);
    const one = await client.embeddings.create("one text", { model: "all-minilm-l6-v2" });
    assert.equal(one.embeddings.length, 1);
  });

  test("tokens: ids, count, context; detokenize gives the text back", async () => {
    const counted = await client.tokens.tokenize("Hello world");
    assert.equal(counted.model, DEFAULT_MODEL);
    assert.equal(counted.count, 2);
    assert.ok(counted.context >= 2048);
    assert.equal(await client.tokens.detokenize(counted.tokens), "Hello world");
    const chat = await client.tokens.tokenize(undefined, { messages: [{ role: "user", content: "Hello world" }] });
    assert.ok(chat.count > counted.count);
  });

  test("a chat model does not embed; a size the model cannot give is refused", async () => {
    await assert.rejects(client.embeddings.create("x", { model: DEFAULT_MODEL }),
      (exc) => exc instanceof ModelTypeMismatch && exc instanceof ValidationError
        && exc.status === 400 && /does not embed/.test(exc.message));
    await assert.rejects(client.embeddings.create("x", { dimensions: 64 }),
      (exc) => exc instanceof ValidationError && /384-dimensional/.test(exc.message));
  });
});

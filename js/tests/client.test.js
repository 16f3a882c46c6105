// The SDK against a real service: the Alpha-Q document's example as written (import line
// aside), every resource, and every error class.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import {
  BackendUnavailable,
  BridgeError,
  Client,
  Conflict,
  ContextLengthExceeded,
  DownloadFailed,
  ERROR_CLASSES,
  Forbidden,
  MethodNotAllowed,
  ModelNotFound,
  NotFound,
  NotSupported,
  PayloadTooLarge,
  RateLimited,
  RateLimitExceeded,
  ServiceUnreachable,
  Unauthorized,
  ValidationError,
  errorFromEnvelope,
} from "compute-bridge";
import { ADMIN, DEFAULT_MODEL, JS_DIR, REPO, freePort, startService } from "./service.js";

const run = promisify(execFile);
const SMALL = { maxTokens: 8, temperature: 0 };

// /work/shared/spec/alpha-q-api.md, "SDK Examples / JavaScript", copied verbatim.
const AQ_EXAMPLE = `import { AlphaQClient } from "@alpha-q/client";

const client = new AlphaQClient("your_api_key");

// Chat completion
const response = await client.chat.completion({
  prompt: "Hello, how are you?",
  modelId: "gpt-3.5-turbo",
});
console.log(response.completion);

// System status
const status = await client.system.status();
console.log(status.resources);
`;

let service;
let admin; // the first account (admin), by API key
let bob; // a second account, by username and password

before(async () => {
  service = await startService();
  admin = new Client(service.apiKey, { baseUrl: service.url });
  bob = new Client({ baseUrl: `${service.url}/api/v1`, username: "bob", password: "bob's password" });
  await bob.auth.loginOrRegister("bob", "bob's password", "bob@example.org");
  await admin.admin.updateUser(1, { tier: "enterprise" }); // this file's many calls: no 429s
}, { timeout: 300_000 });

after(async () => {
  await service?.stop();
});

/** A small HTTP server on loopback for a test: `handler(req, res)`. */
async function serve(handler) {
  const server = http.createServer(handler);
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}

describe("the Alpha-Q document's JavaScript example", () => {
  test("runs as written, with only the import line changed", { timeout: 300_000 }, async (t) => {
    const documented = path.join(REPO, "..", "shared", "spec", "alpha-q-api.md");
    if (existsSync(documented)) {
      const section = readFileSync(documented, "utf8").split("### JavaScript")[1];
      const snippet = section.split("```javascript\n")[1].split("```")[0];
      assert.equal(snippet, AQ_EXAMPLE, "the copy above must match the document");
    } else {
      t.diagnostic(`${documented} is not here: using the copy in this file`);
    }

    // The document's model id is served by this service: the default model's GGUF (the file
    // its package ships, served by llama.cpp), imported under that name (an admin's download
    // from a folder), followed as an async iterator.
    const python = path.join(REPO, ".venv", "bin", "python");
    const { stdout: found } = await run(python, ["-c",
      "from bridge.models.convert import find_default_gguf; print(find_default_gguf())"]);
    const gguf = found.trim();
    const folder = mkdtempSync(path.join(os.tmpdir(), "bridge-js-model-"));
    t.after(() => rmSync(folder, { recursive: true, force: true }));
    const source = path.join(folder, "gpt-3.5-turbo");
    mkdirSync(source);
    linkSync(gguf, path.join(source, path.basename(gguf)));
    const states = [];
    const download = admin.models.download("gpt-3.5-turbo", { source: "path", path: source, pollInterval: 200 });
    for await (const job of download) states.push(job);
    assert.ok(states.length >= 1);
    assert.equal(states[0].modelId, "gpt-3.5-turbo");
    const last = states.at(-1);
    assert.ok(["completed", "ready"].includes(last.status), JSON.stringify(last));
    assert.equal(last.progress, 1);
    assert.ok(["completed", "ready"].includes((await admin.models.status("gpt-3.5-turbo")).status));

    const code = AQ_EXAMPLE
      .replace('import { AlphaQClient } from "@alpha-q/client";',
        'import { Client as AlphaQClient } from "compute-bridge";')
      .replace("your_api_key", service.apiKey);
    const changed = code.split("\n").filter((line, i) => line !== AQ_EXAMPLE.split("\n")[i]);
    assert.equal(changed.length, 2); // the import line, and the key placeholder filled in
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", code], {
      cwd: JS_DIR,
      env: { ...process.env, BRIDGE_URL: service.url, BRIDGE_API_KEY: "" }, // AQ names no URL
      timeout: 240_000,
    });
    const conversations = await admin.conversations.list();
    const asked = conversations.find((c) => c.model === "gpt-3.5-turbo");
    assert.ok(asked, JSON.stringify(conversations));
    const messages = (await admin.conversations.get(asked.id)).messages;
    assert.equal(messages[0].content, "Hello, how are you?");
    const completion = messages[1].content;
    assert.ok(completion.length > 0);
    assert.ok(stdout.startsWith(`${completion}\n`), stdout); // console.log(response.completion)
    const printed = stdout.slice(completion.length + 1); // console.log(status.resources)
    assert.match(printed, /^\{/);
    assert.match(printed, /cpu: \{[^}]*usage: [\d.]+/);
    assert.match(printed, /memory: \{[^}]*total: \d+/);
    assert.match(printed, /gpu: null|gpu: \{/);


    assert.equal((await admin.models.unload("gpt-3.5-turbo")).status, "unloaded");
    assert.equal((await admin.models.delete("gpt-3.5-turbo")).status, "deleted");
    await assert.rejects(admin.chat.completion({ prompt: "Hi", modelId: "gpt-3.5-turbo" }), ModelNotFound);
  });
});

describe("the npm package", () => {
  test("npm pack makes a tarball that installs and runs in another project", { timeout: 120_000 }, async (t) => {
    const project = mkdtempSync(path.join(os.tmpdir(), "bridge-js-install-"));
    t.after(() => rmSync(project, { recursive: true, force: true }));
    const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", project], { cwd: JS_DIR });
    const tarball = stdout.trim().split("\n").at(-1);
    assert.match(tarball, /^compute-bridge-\d+\.\d+\.\d+\.tgz$/);
    const { stdout: listing } = await run("tar", ["-tzf", path.join(project, tarball)]);
    const files = listing.trim().split("\n").sort();
    assert.ok(files.includes("package/src/index.js") && files.includes("package/src/index.d.ts"));
    assert.ok(files.every((f) => /^package\/(src\/[a-z]+\.(js|d\.ts)|README\.md|package\.json)$/.test(f)), files.join(" "));
    await run("npm", ["init", "-y"], { cwd: project });
    await run("npm", ["install", "--offline", "--no-audit", "--no-fund", `./${tarball}`], { cwd: project });
    const installed = JSON.parse(readFileSync(path.join(project, "node_modules", "compute-bridge", "package.json"), "utf8"));
    assert.deepEqual(installed.dependencies ?? {}, {}); // no runtime dependencies
    const script = `import { Client } from "compute-bridge";
const status = await new Client(${JSON.stringify(service.apiKey)}, { baseUrl: ${JSON.stringify(service.url)} }).system.status();
console.log(status.backends[0].name);`;
    const { stdout: out } = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: project });
    assert.equal(out.trim(), "local");
  });
});

describe("client", () => {
  test("base URL: the default, BRIDGE_URL, and AQ's and FT's prefixes", () => {
    const saved = { url: process.env.BRIDGE_URL, key: process.env.BRIDGE_API_KEY };
    try {
      delete process.env.BRIDGE_URL;
      delete process.env.BRIDGE_API_KEY;
      assert.equal(new Client().baseUrl, "http://127.0.0.1:5000");
      assert.equal(new Client().apiKey, undefined);
      process.env.BRIDGE_URL = "http://example.test:5001/api/v1/";
      process.env.BRIDGE_API_KEY = "cb_env_key";
      const fromEnv = new Client();
      assert.equal(fromEnv.baseUrl, "http://example.test:5001");
      assert.equal(fromEnv.apiKey, "cb_env_key");
      assert.equal(new Client("cb_given").apiKey, "cb_given");
      assert.equal(new Client({ username: "u", password: "p" }).apiKey, undefined);
      assert.equal(new Client({ baseUrl: "http://h:1/api" }).baseUrl, "http://h:1");
      assert.equal(new Client({ baseUrl: "https://h/v1" }).baseUrl, "https://h");
      assert.throws(() => new Client({ baseUrl: "h:1" }), TypeError);
      assert.throws(() => new Client({ username: "u" }), TypeError);
    } finally {
      for (const [name, value] of [["BRIDGE_URL", saved.url], ["BRIDGE_API_KEY", saved.key]]) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

describe("auth", () => {
  test("login with a password, session, refresh, automatic renewal, logout", async () => {
    const alice = new Client({ baseUrl: service.url, username: ADMIN.username, password: ADMIN.password });
    const session = await alice.auth.session(); // logs in on first use
    assert.equal(session.isAuthenticated, true);
    assert.equal(session.username, "alice");
    assert.equal(session.role, "admin");
    const first = { access: alice.accessToken, refresh: alice.refreshToken };
    assert.ok(first.access && first.refresh);

    const rotated = await alice.auth.refresh();
    assert.equal(rotated.tokenType, "bearer");
    assert.ok(rotated.expiresIn > 0);
    assert.notEqual(alice.refreshToken, first.refresh);
    const stale = new Client({ baseUrl: service.url, accessToken: "x", refreshToken: first.refresh });
    await assert.rejects(stale.auth.refresh(), Unauthorized); // a spent refresh token
    await alice.auth.login("alice", ADMIN.password); // (that reuse revoked the family)

    alice.accessToken = "not-a-token"; // as if expired: refreshed, then the call goes on
    const before = alice.refreshToken;
    assert.equal((await alice.auth.session()).username, "alice");
    assert.notEqual(alice.refreshToken, before);
    alice.accessToken = "not-a-token";
    alice.refreshToken = "not-a-refresh-token"; // refresh refused too: logs in again
    assert.equal((await alice.auth.session()).username, "alice");

    const borrowed = new Client({ baseUrl: service.url, accessToken: "not-a-token" });
    await assert.rejects(borrowed.models.list(), (exc) => exc instanceof Unauthorized
      && /log in again/.test(exc.message));

    const loggedIn = await new Client({ baseUrl: service.url }).auth.login({
      username: "alice", password: ADMIN.password,
    });
    assert.ok(loggedIn.accessToken && loggedIn.userId === 1);

    const access = alice.accessToken;
    assert.equal((await alice.auth.logout()).message, "Logged out successfully");
    assert.equal(alice.accessToken, undefined);
    assert.equal((await alice.auth.session()).isAuthenticated, false);
    const revoked = new Client({ baseUrl: service.url, accessToken: access });
    await assert.rejects(revoked.models.list(), Unauthorized);
  });

  test("API keys: create (the secret once), list, use, revoke", async () => {
    const created = await bob.auth.createApiKey("notebook");
    assert.match(created.key, /^cb_/);
    assert.equal(created.name, "notebook");
    const keys = await bob.auth.listApiKeys();
    const listed = keys.find((k) => k.id === created.id);
    assert.ok(listed && listed.key === undefined && listed.prefix === created.prefix);
    const keyed = new Client(created.key, { baseUrl: service.url });
    assert.equal((await keyed.auth.session()).username, "bob");
    assert.equal((await bob.auth.revokeApiKey(created.id)).message, "API key revoked");
    await assert.rejects(keyed.models.list(), Unauthorized);
  });

  test("register and loginOrRegister", async () => {
    const carol = new Client({ baseUrl: service.url });
    const registered = await carol.auth.register({ username: "carol", email: "carol@example.org", password: "carol's password" });
    assert.ok(registered.userId > 1);
    await assert.rejects(
      carol.auth.loginOrRegister("carol", "a wrong password", "carol@example.org"), Unauthorized,
    );
    const dave = new Client({ baseUrl: service.url });
    assert.ok((await dave.auth.loginOrRegister({ username: "dave", password: "dave's password", email: "dave@example.org" })).accessToken);
  });
});

describe("user", () => {
  test("profile and preferences (your own keys untouched)", async () => {
    const profile = await bob.user.profile();
    assert.equal(profile.username, "bob");
    await bob.user.updatePreferences({
      theme: "dark", defaultModel: DEFAULT_MODEL, otherPreferences: { font_size: 14, lineHeight: 2 },
    });
    const preferences = (await bob.user.profile()).preferences;
    assert.equal(preferences.theme, "dark");
    assert.equal(preferences.defaultModel, DEFAULT_MODEL);
    assert.deepEqual(preferences.otherPreferences, { font_size: 14, lineHeight: 2 });
  });
});

describe("models", () => {
  test("list, load, status", async () => {
    const models = await admin.models.list();
    const model = models.find((m) => m.id === DEFAULT_MODEL);
    assert.ok(model, JSON.stringify(models));
    for (const field of ["id", "name", "size", "family", "status", "type", "parameters"]) {
      assert.ok(field in model, field);
    }
    assert.ok("topP" in model.parameters && "framework" in model.parameters);
    const loaded = await admin.models.load(DEFAULT_MODEL, { device: "cpu", quantization: "none" });
    assert.equal(loaded.modelId, DEFAULT_MODEL);
    assert.equal(typeof loaded.loadTime, "number");
    assert.ok(loaded.status);
    const wide = await admin.models.load(DEFAULT_MODEL, { numCtx: 1024 });
    assert.equal(wide.numCtx, 1024);
    const status = await admin.models.status(DEFAULT_MODEL);
    assert.equal(status.status, "ready");
    assert.equal(status.progress, 1);
  });

  test("a failed download raises DownloadFailed; a download is cancelled", { timeout: 120_000 }, async (t) => {
    const trickles = [];
    const files = await serve((req, res) => {
      if (req.url.startsWith("/slow")) {
        res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": "10000000" });
        if (req.method === "HEAD") {
          res.end();
          return;
        }
        // a trickle: the job stays "downloading" until it is cancelled
        const timer = setInterval(() => res.write(Buffer.alloc(1000)), 50);
        res.on("close", () => clearInterval(timer));
        trickles.push(timer);
        return;
      }
      const body = Buffer.from("not a model, and not the promised bytes");
      res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": String(body.length) });
      res.end(body);
    });
    t.after(() => {
      trickles.forEach(clearInterval);
      return files.close();
    });

    const states = [];
    await assert.rejects(async () => {
      for await (const job of admin.models.download("broken-model", {
        url: `${files.url}/model.safetensors`, sha256: "0".repeat(64), pollInterval: 200,
      })) states.push(job.status);
    }, (exc) => exc instanceof DownloadFailed && exc.code === "DOWNLOAD_FAILED"
      && typeof exc.details.errorType === "string");
    assert.equal(states.at(-1), "failed");
    await assert.rejects(admin.models.download("broken-model-2", {
      url: `${files.url}/other.safetensors`, sha256: "0".repeat(64), pollInterval: 200,
    }), DownloadFailed); // awaited whole

    const slow = admin.models.download("slow-model", {
      url: `${files.url}/slow/model.safetensors`, sha256: "0".repeat(64), pollInterval: 200,
    });
    const started = await slow.start();
    assert.equal(started.status, "downloading");
    assert.equal(started.modelId, "slow-model");
    const cancelled = await slow.cancel();
    assert.equal(cancelled.status, "cancelled");
    assert.equal((await slow).status, "cancelled"); // the job ended: awaiting it says how
  });
});

describe("chat and FT's generate", () => {
  test("completion: the answer in camelCase, a conversation carried on", async () => {
    const reply = await admin.chat.completion({
      prompt: "What is the capital of France?", modelId: DEFAULT_MODEL, parameters: SMALL,
    });
    assert.equal(typeof reply.completion, "string");
    assert.equal(reply.modelId, DEFAULT_MODEL);
    assert.equal(reply.backend, "local");
    assert.match(reply.conversationId, /^conv_/);
    assert.ok(reply.usage.promptTokens > 0 && reply.usage.completionTokens <= 8);
    assert.equal(reply.usage.totalTokens, reply.usage.promptTokens + reply.usage.completionTokens);
    assert.match(reply.metrics.responseTime, /^PT/);
    const next = await admin.chat.completion({
      prompt: "And of Italy?", conversationId: reply.conversationId, maxTokens: 8,
    });
    assert.equal(next.conversationId, reply.conversationId);
    assert.throws(() => admin.chat.completion({ prompt: "Hi", maxTokenz: 8 }), TypeError);
  });

  test("generate: FT's shape", async () => {
    const generated = await admin.generate({ prompt: "Write a haiku", model: DEFAULT_MODEL, maxTokens: 8 });
    assert.equal(typeof generated.response, "string");
    assert.equal(generated.model, DEFAULT_MODEL);
    assert.ok(generated.usage.tokens <= 8);
    assert.match(generated.usage.time, /^PT/);
    assert.equal(generated.backend, "local");
  });
});

describe("conversations", () => {
  test("list, get, delete", async () => {
    const reply = await bob.chat.completion({ prompt: "Remember the word tangerine.", maxTokens: 4 });
    const listed = await bob.conversations.list({ limit: 5 });
    assert.ok(listed.some((c) => c.id === reply.conversationId));
    const conversation = await bob.conversations.get(reply.conversationId);
    assert.deepEqual(conversation.messages.map((m) => m.role), ["user", "assistant"]);
    assert.match(conversation.messages[0].timestamp, /[+-]\d\d:\d\d$/);
    await assert.rejects(admin.conversations.get(reply.conversationId), NotFound); // not yours
    assert.equal((await bob.conversations.delete(reply.conversationId)).id, reply.conversationId);
    await assert.rejects(bob.conversations.get(reply.conversationId), NotFound);
  });
});

describe("system", () => {
  test("status: resources, models, backends; health", async () => {
    const status = await admin.system.status();
    assert.equal(typeof status.resources.cpu.usage, "number");
    assert.ok(status.resources.memory.total > 0);
    assert.ok("gpu" in status.resources);
    assert.ok(status.models.loaded.includes(DEFAULT_MODEL));
    assert.equal(status.backends[0].name, "local");
    assert.equal(status.backends[0].kind, "local");
    assert.equal((await admin.system.health()).status, "ok");
  });

  test("connect and disconnect remote compute (an OpenAI-compatible server)", async (t) => {
    const remote = await serve((req, res) => {
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify({ object: "list", data: [{ id: "remote-model", object: "model" }] }));
    });
    t.after(() => remote.close());
    const attached = await admin.colab.connect({
      openaiBaseUrl: `${remote.url}/v1`, apiKey: "sk-test", name: "remote-1",
    });
    assert.equal(attached.status, "connected");
    assert.equal(attached.worker, "remote-1");
    assert.equal(attached.runtimeInfo.type, "openai");
    const backends = (await admin.system.status()).backends;
    assert.deepEqual(backends.map((b) => [b.name, b.kind]), [["local", "local"], ["remote-1", "openai"]]);
    assert.deepEqual(backends[1].models, ["remote-model"]);
    const detached = await admin.colab.disconnect("remote-1");
    assert.equal(detached.status, "disconnected");
    assert.deepEqual((await admin.system.status()).backends.map((b) => b.name), ["local"]);
    await assert.rejects(admin.colab.disconnect(), NotFound); // nothing attached
  });
});

describe("admin", () => {
  test("users, a user's tier and limit, the audit log", async () => {
    const users = await admin.admin.users();
    const bobs = users.find((u) => u.username === "bob");
    assert.ok(bobs);
    const updated = await admin.admin.updateUser(bobs.id, { tier: "pro" });
    assert.equal(updated.tier, "pro");
    const events = await admin.admin.audit({ event: "login", limit: 5 });
    assert.ok(events.length > 0 && events.length <= 5);
  });
});

describe("backups (admin)", () => {
  test("backup, list, restore", async () => {
    const made = await admin.db.backup();
    assert.equal(made.status, "completed");
    assert.ok(made.backupId);
    const listed = await admin.db.list();
    assert.ok(listed.some((b) => b.id === made.backupId));
    const restored = await admin.db.restore(made.backupId);
    assert.ok(restored.restoredAt);
    assert.ok(restored.safetyBackupId);
    await assert.rejects(bob.db.list(), Forbidden);
  });
});

describe("errors: one tree, keyed by the envelope's code", () => {
  test("ValidationError, with details", async () => {
    const exc = await admin.chat.completion({ prompt: "" }).catch((e) => e);
    assert.ok(exc instanceof ValidationError && exc instanceof BridgeError);
    assert.equal(exc.code, "VALIDATION_ERROR");
    assert.equal(exc.status, 400);
    assert.equal(exc.details.field, "prompt");
    assert.ok(exc.requestId);
    const range = await admin.chat.completion({ prompt: "Hi", temperature: 5 }).catch((e) => e);
    assert.ok(range instanceof ValidationError);
    assert.match(range.details.field, /temperature/);
  });

  test("Unauthorized", async () => {
    const exc = await new Client("cb_not_a_key", { baseUrl: service.url }).models.list().catch((e) => e);
    assert.ok(exc instanceof Unauthorized);
    assert.equal(exc.code, "UNAUTHORIZED");
    assert.equal(exc.status, 401);
    await assert.rejects(new Client({ baseUrl: service.url }).auth.login("alice", "wrong password"), Unauthorized);
  });

  test("Forbidden", async () => {
    const exc = await bob.db.backup().catch((e) => e);
    assert.ok(exc instanceof Forbidden);
    assert.equal(exc.status, 403);
  });

  test("NotFound and ModelNotFound", async () => {
    const missing = await admin.conversations.get("conv_0000000000000000").catch((e) => e);
    assert.ok(missing instanceof NotFound && !(missing instanceof ModelNotFound));
    const model = await admin.chat.completion({ prompt: "Hi", modelId: "llama-9000" }).catch((e) => e);
    assert.ok(model instanceof ModelNotFound && model instanceof NotFound);
    assert.equal(model.code, "MODEL_NOT_FOUND");
    assert.equal(model.message, "Model not found");
    assert.deepEqual(model.details, { modelId: "llama-9000" });
  });

  test("MethodNotAllowed", async () => {
    const exc = await admin.request("PATCH", "/api/v1/models").catch((e) => e);
    assert.ok(exc instanceof MethodNotAllowed);
    assert.equal(exc.status, 405);
  });

  test("Conflict", async () => {
    const exc = await admin.auth.register("alice", "alice@example.org", ADMIN.password).catch((e) => e);
    assert.ok(exc instanceof Conflict);
    assert.equal(exc.details.field, "username");
  });

  test("PayloadTooLarge", async () => {
    const exc = await admin.chat.completion({ prompt: "x".repeat(5 * 1024 * 1024) }).catch((e) => e);
    assert.ok(exc instanceof PayloadTooLarge);
    assert.equal(exc.status, 413);
  });

  test("RateLimitExceeded (RateLimited), with retryAfter", async () => {
    assert.equal(RateLimited, RateLimitExceeded);
    const erin = new Client({ baseUrl: service.url });
    await erin.auth.register("erin", "erin@example.org", "erin's password");
    await erin.auth.login("erin", "erin's password");
    const key = (await erin.auth.createApiKey("limited")).key;
    const id = (await admin.admin.users()).find((u) => u.username === "erin").id;
    await admin.admin.updateUser(id, { rateLimit: "2/minute" });
    const limited = new Client(key, { baseUrl: service.url });
    let exc;
    for (let i = 0; i < 4 && !exc; i += 1) {
      exc = await limited.conversations.list().then(() => undefined, (e) => e);
    }
    assert.ok(exc instanceof RateLimited && exc instanceof RateLimitExceeded, String(exc));
    assert.equal(exc.status, 429);
    assert.ok(exc.retryAfter > 0 && exc.retryAfter <= 60, String(exc.retryAfter));
    assert.equal(exc.details.limit, 2);
    assert.match(exc.details.resetIn, /^PT/);
  });

  test("NotSupported", async () => {
    const exc = await admin.models.load(DEFAULT_MODEL, { device: "cuda" }).catch((e) => e);
    if (exc === undefined) return; // a machine with CUDA: nothing to refuse
    assert.ok(exc instanceof NotSupported, String(exc));
    assert.equal(exc.status, 501);
  });

  test("BackendUnavailable", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const exc = await admin.colab.connect({ workerUrl: closed, workerSecret: "a-worker-secret-of-some-length" })
      .catch((e) => e);
    assert.ok(exc instanceof BackendUnavailable, String(exc));
    assert.equal(exc.status, 503);
  });

  test("ServiceUnreachable: a service that is down is one clear error", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const down = new Client("cb_x_y", { baseUrl: url });
    const exc = await down.system.status().catch((e) => e);
    assert.ok(exc instanceof ServiceUnreachable);
    assert.ok(exc.message.startsWith(`cannot reach the service at ${url} (`), exc.message);
    assert.equal(exc.details.url, url);
    await assert.rejects(async () => {
      for await (const _token of down.chat.stream({ prompt: "Hi" })) assert.fail("no tokens");
    }, ServiceUnreachable);
    const quiet = await serve(() => {}); // accepts, never answers
    try {
      const slow = new Client("cb_x_y", { baseUrl: quiet.url, timeout: 300 });
      const late = await slow.system.status().catch((e) => e);
      assert.ok(late instanceof ServiceUnreachable);
      assert.match(late.message, /did not answer in time/);
    } finally {
      await quiet.close();
    }
  });

  test("every class maps from its code; unknown codes keep theirs", () => {
    for (const cls of ERROR_CLASSES) {
      const exc = errorFromEnvelope({ error: { code: cls.code, message: "m", request_id: "r" } }, cls.status);
      assert.equal(exc.constructor, cls);
      assert.equal(exc.code, cls.code);
      assert.equal(exc.requestId, "r");
      assert.deepEqual(exc.toJSON(), { error: { code: cls.code, message: "m", request_id: "r" } });
    }
    const context = errorFromEnvelope({ error: { code: "CONTEXT_LENGTH_EXCEEDED", message: "m", details: { prompt_tokens: 9000, max_tokens: 16, context: 8192 } } }, 400);
    assert.ok(context instanceof ContextLengthExceeded && context instanceof ValidationError);
    assert.deepEqual(context.details, { promptTokens: 9000, maxTokens: 16, context: 8192 });
    const unknown = errorFromEnvelope({ error: { code: "DISK_FULL", message: "full" } }, 507);
    assert.equal(unknown.constructor, BridgeError);
    assert.equal(unknown.code, "DISK_FULL");
    assert.equal(unknown.status, 507);
    const newer = errorFromEnvelope({ error: { code: "SOMETHING_NEW" } }, 404);
    assert.ok(newer instanceof NotFound && !(newer instanceof ModelNotFound));
    assert.equal(newer.code, "SOMETHING_NEW");
    const flat = errorFromEnvelope({ error: "rate_limit", message: "slow down", retry_after: 7 }, 429);
    assert.ok(flat instanceof RateLimited);
    assert.equal(flat.retryAfter, 7);
    const internal = errorFromEnvelope({ error: { code: "INTERNAL_ERROR", message: "Internal server error" } }, 500);
    assert.equal(internal.constructor, BridgeError);
  });
});

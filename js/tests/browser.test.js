// The packed package (`npm pack`) in headless Chromium, on a page of another origin than the
// service's, with CORS enabled for that origin: a chat, a streamed chat, a WebSocket chat.
// Skipped, saying why, where Debian's chromium is not installed (`make browser-deps`).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { JS_DIR, freePort, startService } from "./service.js";

const run = promisify(execFile);
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const skip = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is not installed (Debian's chromium package; \`make browser-deps\` installs it)`;

const PAGE = `<!doctype html>
<html>
<head><meta charset="utf-8"><title>compute-bridge in a browser</title></head>
<body>
<pre id="out"></pre>
<script type="module">
import { Client, ModelNotFound, ServiceUnreachable } from "/compute-bridge/src/index.js";

window.demo = async (baseUrl, apiKey) => {
  const client = new Client(apiKey, { baseUrl });
  const summary = { origin: location.origin };
  try {
    const reply = await client.chat.completion({
      prompt: "What is the capital of France?", parameters: { maxTokens: 8, temperature: 0 },
    });
    summary.completion = { text: reply.completion, backend: reply.backend, usage: reply.usage };

    const stream = client.chat.stream({ prompt: "Name three colours.", maxTokens: 8 });
    const tokens = [];
    for await (const token of stream) {
      tokens.push(token);
      document.getElementById("out").textContent += token;
    }
    summary.stream = { tokens, final: stream.final.completion, backend: stream.final.backend };

    const socket = await client.socket();
    const wsChat = socket.chatStream({ prompt: "Say hello.", maxTokens: 4 });
    const wsTokens = [];
    for await (const token of wsChat) wsTokens.push(token);
    summary.socket = { tokens: wsTokens, final: wsChat.final.completion };
    await socket.close();

    // A header of another client (OpenAI's SDK sends x-stainless-*) passes the preflight.
    const custom = new Client(apiKey, { baseUrl, headers: { "X-Stainless-Os": "Linux" } });
    summary.customHeader = (await custom.system.status()).backends[0].name;

    try {
      await client.chat.completion({ prompt: "Hi", modelId: "llama-9000" });
    } catch (exc) {
      summary.error = { modelNotFound: exc instanceof ModelNotFound, code: exc.code,
        details: exc.details, requestId: Boolean(exc.requestId) };
    }
  } catch (exc) {
    summary.failure = { name: exc.name, message: exc.message,
      unreachable: exc instanceof ServiceUnreachable };
  }
  return summary;
};
window.ready = true;
</script>
</body>
</html>
`;

const TYPES = { ".js": "text/javascript", ".json": "application/json", ".html": "text/html" };

describe("in a browser (headless Chromium)", () => {
  let service;
  let pages;
  let browser;
  let workdir;
  let pageUrl;

  before(async () => {
    if (skip) return;
    workdir = mkdtempSync(path.join(os.tmpdir(), "bridge-js-browser-"));
    // the package as published: npm pack, then unpacked
    const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", workdir], { cwd: JS_DIR });
    const tarball = path.join(workdir, stdout.trim().split("\n").at(-1));
    await run("tar", ["-xzf", tarball, "-C", workdir]);
    const root = path.join(workdir, "package");

    const port = await freePort();
    pageUrl = `http://127.0.0.1:${port}`;
    pages = http.createServer((req, res) => {
      const url = new URL(req.url, pageUrl);
      if (url.pathname === "/") {
        res.writeHead(200, { "Content-Type": "text/html" });
        res.end(PAGE);
        return;
      }
      const file = path.normalize(path.join(root, url.pathname.replace(/^\/compute-bridge\//, "")));
      if (!url.pathname.startsWith("/compute-bridge/") || !file.startsWith(root) || !existsSync(file)) {
        res.writeHead(404);
        res.end();
        return;
      }
      res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream" });
      res.end(readFileSync(file));
    });
    await new Promise((resolve) => pages.listen(port, "127.0.0.1", resolve));

    service = await startService({ env: { BRIDGE_CORS_ORIGINS: pageUrl } });
    const { chromium } = await import("playwright-core");
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    });
  }, { timeout: 300_000 });

  after(async () => {
    await browser?.close();
    await service?.stop();
    if (pages) {
      pages.closeAllConnections();
      await new Promise((resolve) => pages.close(resolve));
    }
    if (workdir) rmSync(workdir, { recursive: true, force: true });
  });

  async function demo(origin) {
    const page = await browser.newPage();
    const problems = [];
    page.on("pageerror", (exc) => problems.push(String(exc)));
    try {
      await page.goto(`${origin}/`);
      await page.waitForFunction(() => window.ready === true, null, { timeout: 30_000 });
      const summary = await page.evaluate(
        ([url, key]) => window.demo(url, key), [service.url, service.apiKey],
      );
      return { summary, problems };
    } finally {
      await page.close();
    }
  }

  test("a chat, a streamed chat and a WebSocket chat from another origin", { skip, timeout: 180_000 }, async () => {
    const { summary, problems } = await demo(pageUrl);
    assert.deepEqual(problems, []);
    assert.equal(summary.failure, undefined, JSON.stringify(summary.failure));
    assert.notEqual(summary.origin, new URL(service.url).origin);
    assert.equal(typeof summary.completion.text, "string");
    assert.equal(summary.completion.backend, "local");
    assert.ok(summary.completion.usage.completionTokens <= 8);
    assert.ok(summary.stream.tokens.length > 0);
    assert.equal(summary.stream.final, summary.stream.tokens.join(""));
    assert.equal(summary.stream.backend, "local");
    assert.equal(summary.socket.final, summary.socket.tokens.join(""));
    assert.equal(summary.customHeader, "local");
    assert.deepEqual(summary.error, {
      modelNotFound: true, code: "MODEL_NOT_FOUND", details: { modelId: "llama-9000" }, requestId: true,
    });
  });

  test("a page on an origin the service does not allow is refused", { skip, timeout: 60_000 }, async () => {
    const other = pageUrl.replace("127.0.0.1", "localhost"); // same page, another origin
    const { summary } = await demo(other);
    assert.equal(summary.origin, other);
    assert.equal(summary.completion, undefined);
    assert.equal(summary.failure.unreachable, true, JSON.stringify(summary.failure));
    assert.match(summary.failure.message, /BRIDGE_CORS_ORIGINS/);
  });
});

// A real Compute Bridge service for a test file: `bridge serve` on a free loopback port, a
// fresh BRIDGE_HOME, the real default model; its first account (the admin) registered,
// logged in, with an API key. One per test file; stop() it in after().

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, closeSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const JS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = path.resolve(JS_DIR, "..");
export const DEFAULT_MODEL = "smollm2-135m-instruct";
export const ADMIN = { username: "alice", email: "alice@example.org", password: "correct horse" };
const BRIDGE = process.env.BRIDGE_BIN || path.join(REPO, ".venv", "bin", "bridge");
const START_TIMEOUT_MS = 240_000;

/** A port nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function post(url, body, token) {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

/**
 * Start the service. `env` adds variables (BRIDGE_CORS_ORIGINS, ...).
 * @returns {Promise<{url: string, port: number, home: string, apiKey: string,
 *   accessToken: string, refreshToken: string, log: () => string, stop: () => Promise<void>}>}
 */
export async function startService({ env = {} } = {}) {
  if (!existsSync(BRIDGE)) {
    throw new Error(`${BRIDGE} is missing: run \`make install\` in ${REPO} first (or set BRIDGE_BIN)`);
  }
  const home = mkdtempSync(path.join(os.tmpdir(), "bridge-js-test-"));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logPath = path.join(home, "service.log");
  const logFd = openSync(logPath, "a");
  const child = spawn(BRIDGE, ["serve", "--host", "127.0.0.1", "--port", String(port)], {
    env: {
      ...process.env,
      BRIDGE_HOME: path.join(home, "data"),
      BRIDGE_LOG_LEVEL: "WARNING",
      ...env,
    },
    stdio: ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  const killNow = () => child.kill("SIGKILL");
  process.once("exit", killNow);
  const log = () => {
    try {
      return readFileSync(logPath, "utf8");
    } catch {
      return "";
    }
  };
  let exited = null;
  const exit = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });

  const stop = async () => {
    process.removeListener("exit", killNow);
    if (!exited) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exit;
      clearTimeout(timer);
    }
    rmSync(home, { recursive: true, force: true });
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited) {
      const tail = log().split("\n").slice(-30).join("\n");
      await stop();
      throw new Error(`bridge serve exited (${JSON.stringify(exited)}) before answering:\n${tail}`);
    }
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      const tail = log().split("\n").slice(-30).join("\n");
      await stop();
      throw new Error(`bridge serve did not answer /healthz within ${START_TIMEOUT_MS / 1000} s:\n${tail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }

  const api = `${url}/api/v1`;
  await post(`${api}/auth/register`, ADMIN);
  const login = await post(`${api}/auth/login`, { username: ADMIN.username, password: ADMIN.password });
  const key = await post(`${api}/auth/api-keys`, { name: "js-tests" }, login.access_token);
  return {
    url,
    port,
    home: path.join(home, "data"),
    apiKey: key.key,
    accessToken: login.access_token,
    refreshToken: login.refresh_token,
    log,
    stop,
  };
}

/** A TCP relay on loopback in front of `port`; `cut()` drops every connection through it. */
export async function cuttableProxy(port) {
  const sockets = new Set();
  const server = net.createServer((near) => {
    const far = net.connect(port, "127.0.0.1");
    sockets.add(near);
    sockets.add(far);
    near.pipe(far);
    far.pipe(near);
    const drop = () => {
      near.destroy();
      far.destroy();
      sockets.delete(near);
      sockets.delete(far);
    };
    near.on("error", drop);
    far.on("error", drop);
    near.on("close", drop);
    far.on("close", drop);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

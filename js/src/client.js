// The JavaScript SDK: `Client`, a fetch-based client for the Compute Bridge API.

import { toCamel, toSnake } from "./case.js";
import { nativeBody, withParsed } from "./structured.js";
import {
  BridgeError,
  ServiceUnreachable,
  Unauthorized,
  errorFromEnvelope,
} from "./errors.js";
import {
  Admin,
  Auth,
  Chat,
  Colab,
  Conversations,
  Database,
  Models,
  System,
  User,
} from "./resources.js";
import { Embeddings } from "./embeddings.js";
import { openSocket } from "./socket.js";
import { Tokens } from "./tokens.js";
import { ChatStream } from "./stream.js";

export const VERSION = "0.1.0";
export const DEFAULT_BASE_URL = "http://127.0.0.1:5000";
const SUFFIXES = ["/api/v1", "/api", "/v1"];
const IS_NODE = typeof globalThis.process?.versions?.node === "string"
  && typeof globalThis.window === "undefined";

/** An environment variable in Node; undefined in browsers. */
function env(name) {
  if (!IS_NODE) return undefined;
  const value = globalThis.process.env?.[name];
  return value ? value : undefined;
}

/** The service root: accepts AQ's `.../api/v1`, FT's `.../api` and `.../v1` too. */
export function normalizeBaseUrl(url) {
  let root = String(url).trim().replace(/\/+$/, "");
  if (!/^https?:\/\//i.test(root)) {
    throw new TypeError(`baseUrl must start with http:// or https:// (got ${JSON.stringify(url)})`);
  }
  for (const suffix of SUFFIXES) {
    if (root.endsWith(suffix)) {
      root = root.slice(0, -suffix.length);
      break;
    }
  }
  return root;
}

/** The one error for a service that cannot be reached: where, and why in a few words. */
export function unreachable(baseUrl, exc) {
  const cause = exc?.cause;
  const reason = cause?.code || cause?.message || exc?.message || String(exc);
  const hint = IS_NODE
    ? "is it running (`bridge serve` or `make run`)?"
    : "is it running, and does its BRIDGE_CORS_ORIGINS allow this page's origin?";
  return new ServiceUnreachable(`cannot reach the service at ${baseUrl} (${reason}); ${hint}`, {
    details: { url: baseUrl, reason },
    cause: exc,
  });
}

/** A signal that aborts with `signal`, or after `timeout` ms (marked as a timeout). */
function linked(signal, timeout) {
  const controller = new AbortController();
  const state = { timedOut: false };
  const onAbort = () => controller.abort(signal.reason);
  if (signal) {
    if (signal.aborted) controller.abort(signal.reason);
    else signal.addEventListener("abort", onAbort, { once: true });
  }
  const timer = timeout
    ? setTimeout(() => {
      state.timedOut = true;
      controller.abort(new DOMException("timed out", "TimeoutError"));
    }, timeout)
    : undefined;
  return {
    signal: controller.signal,
    state,
    done() {
      clearTimeout(timer);
      if (signal) signal.removeEventListener("abort", onAbort);
    },
  };
}

/**
 * A connection to one Compute Bridge service.
 *
 *     const client = new Client(apiKey);                        // or $BRIDGE_API_KEY in Node
 *     const client = new Client({ baseUrl, username, password });
 *     const reply = await client.chat.completion({ prompt: "Hello!" });
 */
export class Client {
  #password;
  #fetch;
  #headers;
  #renewal = null;

  /**
   * @param {string | object} [apiKeyOrOptions]  an API key, or the options
   * @param {object} [options]  the options, when the first argument is the key
   */
  constructor(apiKeyOrOptions, options) {
    const given = typeof apiKeyOrOptions === "string"
      ? { ...(options || {}), apiKey: apiKeyOrOptions }
      : { ...(apiKeyOrOptions || {}) };
    this.baseUrl = normalizeBaseUrl(given.baseUrl || env("BRIDGE_URL") || DEFAULT_BASE_URL);
    let apiKey = given.apiKey;
    if (apiKey === undefined && !given.username && !given.accessToken) {
      apiKey = env("BRIDGE_API_KEY");
    }
    if (!given.username !== !given.password) {
      throw new TypeError("give both username and password, or neither");
    }
    this.apiKey = apiKey || undefined;
    this.username = given.username || undefined;
    this.#password = given.password || undefined;
    this.accessToken = given.accessToken || undefined;
    this.refreshToken = given.refreshToken || undefined;
    this.timeout = given.timeout === undefined ? 120_000 : given.timeout;
    this.WebSocket = given.WebSocket;
    const fetcher = given.fetch || globalThis.fetch;
    if (typeof fetcher !== "function") {
      throw new TypeError("no fetch on this platform: pass { fetch } (Node >= 20 has one)");
    }
    this.#fetch = (...args) => fetcher(...args);
    this.#headers = {
      Accept: "application/json",
      ...(IS_NODE ? { "User-Agent": `compute-bridge-js/${VERSION}` } : {}),
      ...(given.headers || {}),
    };
    this.auth = new Auth(this);
    this.user = new User(this);
    this.models = new Models(this);
    this.chat = new Chat(this);
    this.embeddings = new Embeddings(this);
    this.tokens = new Tokens(this);
    this.conversations = new Conversations(this);
    this.system = new System(this);
    this.colab = new Colab(this);
    this.db = new Database(this);
    this.admin = new Admin(this);
  }

  toString() {
    const who = this.apiKey ? "api key" : (this.username || "anonymous");
    return `Client(${this.baseUrl}, ${who})`;
  }

  // -- FT's generate ---------------------------------------------------------------------

  /**
   * FT's `POST /generate`: `{ response, usage, backend, ... }`, or a ChatStream when
   * `stream: true`. `generate("Write a haiku", "smollm2-135m-instruct")` works too.
   */
  generate(promptOrOptions, model) {
    const options = typeof promptOrOptions === "string"
      ? { prompt: promptOrOptions, model }
      : { ...(promptOrOptions || {}) };
    const { body, signal, stream, responseFormat } = nativeBody(options, "model");
    if (stream) {
      return this.openStream("/api/v1/generate", body, {
        signal, finish: (answer) => withParsed(answer, responseFormat) });
    }
    return this.request("POST", "/api/v1/generate", { json: body, signal })
      .then((answer) => withParsed(answer, responseFormat));
  }

  /** A WebSocket on `/ws` (chat streams, status pushes, model_status, chat_update). */
  socket(options = {}) {
    return openSocket(this, options);
  }

  // -- transport -------------------------------------------------------------------------

  /**
   * One call to the API: the decoded JSON answer (keys in camelCase), or the typed error it
   * carried. `json` is sent as is (snake_case keys, as the service expects).
   * @param {string} method
   * @param {string} path  e.g. `/api/v1/models`
   * @param {{json?: unknown, query?: object, auth?: boolean, signal?: AbortSignal,
   *          timeout?: number}} [options]
   */
  async request(method, path, options = {}) {
    const text = await this.#send(method, path, options);
    if (!text) return {};
    try {
      return toCamel(JSON.parse(text));
    } catch {
      throw new BridgeError(
        `the service at ${this.baseUrl} answered ${path} with something that is not JSON; `
        + "is baseUrl the Compute Bridge service?",
        { details: { url: this.baseUrl, path } },
      );
    }
  }

  /** POST `body` with `stream: true`; the NDJSON answer as a ChatStream of tokens. */
  openStream(path, body, { signal, finish } = {}) {
    return new ChatStream(
      (streamSignal) => this.#send("POST", path, {
        json: { ...body, stream: true },
        signal: streamSignal,
        timeout: 0,
        raw: true,
      }),
      { baseUrl: this.baseUrl, signal, idleTimeout: this.timeout || undefined, finish },
    );
  }

  async #send(method, path, { json, query, auth = true, signal, timeout, raw = false } = {}) {
    let url = this.baseUrl + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(toSnake(query))) {
        if (value !== undefined && value !== null) params.append(key, String(value));
      }
      const encoded = params.toString();
      if (encoded) url += `?${encoded}`;
    }
    let renewed = false;
    for (;;) {
      const token = auth ? await this.#bearer() : undefined;
      const headers = { ...this.#headers };
      if (token) headers.Authorization = `Bearer ${token}`;
      if (json !== undefined) headers["Content-Type"] = "application/json";
      // a stream's body outlives this call: its own signal goes to fetch as it is
      const limit = raw
        ? { signal, state: { timedOut: false }, done() {} }
        : linked(signal, timeout ?? this.timeout);
      let response;
      try {
        response = await this.#fetch(url, {
          method,
          headers,
          body: json === undefined ? undefined : JSON.stringify(json),
          signal: limit.signal,
        });
      } catch (exc) {
        limit.done();
        throw this.#failure(exc, signal, limit, timeout ?? this.timeout);
      }
      let text;
      if (raw && response.ok) {
        limit.done();
      } else {
        try {
          text = await response.text();
        } catch (exc) {
          throw this.#failure(exc, signal, limit, timeout ?? this.timeout);
        } finally {
          limit.done();
        }
      }
      if (response.status === 401 && token && !renewed && token !== this.apiKey) {
        await this.#renew(token);
        renewed = true;
        continue;
      }
      if (!response.ok) {
        let envelope;
        try {
          envelope = JSON.parse(text);
        } catch {
          envelope = undefined;
        }
        if (!envelope || typeof envelope !== "object" || !("error" in envelope)) {
          const shown = text.split(/\s+/).join(" ").trim().slice(0, 200);
          envelope = {
            error: { message: `HTTP ${response.status} from ${this.baseUrl}${path}${shown ? `: ${shown}` : ""}` },
          };
        }
        throw errorFromEnvelope(envelope, response.status, response.headers);
      }
      return raw ? response : text;
    }
  }

  /** What a failed fetch means: the caller's abort, a timeout, or an unreachable service. */
  #failure(exc, signal, limit, timeout) {
    if (signal?.aborted) return signal.reason;
    if (limit.state.timedOut) {
      return new ServiceUnreachable(
        `the service at ${this.baseUrl} did not answer in time (${timeout / 1000} s)`,
        { details: { url: this.baseUrl } },
      );
    }
    if (limit.signal?.aborted) return limit.signal.reason;
    return unreachable(this.baseUrl, exc);
  }

  // -- credentials -----------------------------------------------------------------------

  /** The token to send: the API key, the access token, or a fresh login's. */
  async #bearer() {
    if (this.apiKey) return this.apiKey;
    if (!this.accessToken && this.username && this.#password) {
      await this.#shared(() => this.#login(this.username, this.#password));
    }
    return this.accessToken;
  }

  /** The token a WebSocket handshake carries (logs in first when needed). */
  async bearerToken() {
    return this.#bearer();
  }

  #shared(work) {
    if (!this.#renewal) {
      this.#renewal = work().finally(() => {
        this.#renewal = null;
      });
    }
    return this.#renewal;
  }

  /** After a 401 on `used`: refresh the token pair once, else log in again. */
  async #renew(used) {
    if (this.#renewal) return this.#renewal;
    if (this.accessToken && this.accessToken !== used) return undefined; // renewed already
    return this.#shared(async () => {
      this.accessToken = undefined;
      if (this.refreshToken) {
        try {
          this.storeTokens(await this.#postUnauthenticated(
            "/api/v1/auth/refresh", { refresh_token: this.refreshToken },
          ));
          return;
        } catch (exc) {
          if (!(exc instanceof Unauthorized)) throw exc;
          this.refreshToken = undefined;
        }
      }
      if (this.username && this.#password) {
        await this.#login(this.username, this.#password);
        return;
      }
      throw new Unauthorized(
        "the access token expired or was revoked, and this client holds no refresh token or "
        + "password to renew it; log in again",
      );
    });
  }

  async #login(username, password) {
    const answer = await this.#postUnauthenticated(
      "/api/v1/auth/login", { username, password },
    );
    this.storeTokens(answer);
    return answer;
  }

  /** Log in with a password; later calls use (and renew) these tokens. */
  async login(username, password) {
    const answer = await this.#login(username, password);
    this.apiKey = undefined;
    this.username = username;
    this.#password = password;
    return answer;
  }

  /** Drop tokens and password (after logout): later calls go unauthenticated. */
  forgetCredentials() {
    this.accessToken = undefined;
    this.refreshToken = undefined;
    this.username = undefined;
    this.#password = undefined;
  }

  /** Keep the tokens of a login or refresh answer (camelCase, as `request` returns it). */
  storeTokens(answer) {
    this.accessToken = String(answer.accessToken);
    this.refreshToken = answer.refreshToken ? String(answer.refreshToken) : this.refreshToken;
  }

  #postUnauthenticated(path, body) {
    return this.request("POST", path, { json: body, auth: false });
  }
}


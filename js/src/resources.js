// The SDK's resources, one small class per part of the API (`client.models`, ...), named as in
// the Python SDK (bridge/sdk/resources.py), with camelCase names and options objects.

import { compact, toSnake } from "./case.js";
import { parametersOf } from "./parameters.js";
import { nativeBody, withParsed } from "./structured.js";
import { BridgeError, Conflict, DownloadFailed, Unauthorized } from "./errors.js";

const V1 = "/api/v1";
const DOWNLOAD_DONE = new Set(["completed", "ready", "failed", "cancelled", "error"]);
const CONNECT_TIMEOUT = 600; // seconds: the longest launch the service allows
export { parametersOf };

function id(value) {
  return encodeURIComponent(String(value));
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export class Resource {
  constructor(client) {
    this._client = client;
  }

  _call(method, path, options) {
    return this._client.request(method, V1 + path, options);
  }
}

/** Accounts and sessions: register, login, refresh, logout, session, API keys. */
export class Auth extends Resource {
  /** `register({ username, email, password })` (or the three as arguments). */
  register(usernameOrOptions, email, password) {
    const body = typeof usernameOrOptions === "object"
      ? usernameOrOptions
      : { username: usernameOrOptions, email, password };
    return this._call("POST", "/auth/register", {
      auth: false,
      json: { username: body.username, email: body.email, password: body.password },
    });
  }

  /** Log in (`login(username, password)` or `login({ username, password })`); the client
   * then sends, and renews, these tokens. */
  login(usernameOrOptions, password) {
    const { username, password: secret } = typeof usernameOrOptions === "object"
      ? usernameOrOptions
      : { username: usernameOrOptions, password };
    return this._client.login(username, secret);
  }

  /** Log in; an unknown account is registered first when `email` is given. */
  async loginOrRegister(usernameOrOptions, password, email) {
    const given = typeof usernameOrOptions === "object"
      ? usernameOrOptions
      : { username: usernameOrOptions, password, email };
    try {
      return await this.login(given.username, given.password);
    } catch (refused) {
      if (!(refused instanceof Unauthorized) || !given.email) throw refused;
      try {
        await this.register(given.username, given.email, given.password);
      } catch (exc) {
        if (exc instanceof Conflict) throw refused; // the account exists: wrong password
        throw exc;
      }
      return this.login(given.username, given.password);
    }
  }

  /** Rotate the token pair now (the client also does it by itself after a 401). */
  async refresh() {
    if (!this._client.refreshToken) {
      throw new BridgeError("this client holds no refresh token; log in first");
    }
    const answer = await this._call("POST", "/auth/refresh", {
      auth: false,
      json: { refresh_token: this._client.refreshToken },
    });
    this._client.storeTokens(answer);
    return answer;
  }

  /** Revoke this client's tokens on the service and forget them here. */
  async logout() {
    const answer = await this._call("POST", "/auth/logout", {
      json: compact({ refresh_token: this._client.refreshToken }),
    });
    this._client.forgetCredentials();
    return answer;
  }

  session() {
    return this._call("GET", "/auth/session");
  }

  /** A new API key; `key` (the secret) is in this answer only. */
  createApiKey(name = "sdk") {
    return this._call("POST", "/auth/api-keys", { json: { name } });
  }

  async listApiKeys() {
    return (await this._call("GET", "/auth/api-keys")).apiKeys;
  }

  revokeApiKey(keyId) {
    return this._call("DELETE", `/auth/api-keys/${id(keyId)}`);
  }
}

/** FT's profile and preferences. */
export class User extends Resource {
  async profile() {
    return (await this._call("GET", "/user/profile")).user;
  }

  /** `{ theme, defaultModel, otherPreferences }`. */
  updatePreferences(preferences) {
    return this._call("PUT", "/user/preferences", { json: { preferences: toSnake(preferences) } });
  }
}

/**
 * A download job: `for await (const job of download)` yields its state at every poll (the
 * first is the service's answer to the POST) and ends when the job does; `await download`
 * gives the last state. A failed job raises `DownloadFailed` (`details.errorType`).
 */
export class DownloadProgress {
  constructor(models, modelId, body, { pollInterval = 500, timeout, signal } = {}) {
    this.modelId = modelId;
    this._models = models;
    this._body = body;
    this._pollInterval = pollInterval;
    this._timeout = timeout;
    this._signal = signal;
    this._started = undefined;
  }

  /** Send the POST (once); its answer, the job as it started. */
  start() {
    if (!this._started) {
      this._started = this._models._call("POST", "/models/download", {
        json: this._body, signal: this._signal,
      }).then((job) => ({ modelId: this.modelId, ...job }));
    }
    return this._started;
  }

  async* [Symbol.asyncIterator]() {
    let job = await this.start();
    const deadline = this._timeout ? Date.now() + this._timeout : undefined;
    yield job;
    while (!DOWNLOAD_DONE.has(job.status)) {
      if (deadline !== undefined && Date.now() > deadline) {
        throw new DownloadFailed(
          `${this.modelId}: still ${job.status} after ${this._timeout / 1000} s`,
          { details: { modelId: this.modelId, errorType: "TIMEOUT" } },
        );
      }
      await sleep(this._pollInterval, this._signal);
      job = await this._models.status(this.modelId, { signal: this._signal });
      yield job;
    }
    if (job.status === "failed" || job.status === "error") {
      const err = job.error || {};
      throw new DownloadFailed(
        String(err.message || job.message || `download of ${this.modelId} failed`),
        { details: { modelId: this.modelId, errorType: err.errorType || job.errorType } },
      );
    }
  }

  /** Follow the job to its end; its last state. */
  async wait() {
    let last;
    for await (const job of this) last = job;
    return last;
  }

  then(onFulfilled, onRejected) {
    return this.wait().then(onFulfilled, onRejected);
  }

  catch(onRejected) {
    return this.wait().catch(onRejected);
  }

  /** Cancel the job on the service. */
  cancel() {
    return this._models.cancel(this.modelId);
  }
}

/** The catalog, downloads, load and unload. */
export class Models extends Resource {
  async list() {
    return (await this._call("GET", "/models")).models;
  }

  /** FT's download status: `status`, `progress` (0-1), `eta`, `speed`. */
  async status(modelId, { signal } = {}) {
    return { modelId, ...(await this._call("GET", `/models/${id(modelId)}/status`, { signal })) };
  }

  /**
   * Start a download: `{ source, repoId, revision, url, sha256, path, include }` name where
   * from; `pollInterval` (ms), `timeout` (ms) and `signal` bound the following. Iterate the
   * answer for progress, or await it for the end.
   */
  download(modelId, options = {}) {
    const { pollInterval, timeout, signal, ...source } = options;
    const body = toSnake(compact({ modelId, ...source }));
    return new DownloadProgress(this, modelId, body, { pollInterval, timeout, signal });
  }

  /** The caller's recent download jobs (an admin's: everyone's). */
  async downloads() {
    return (await this._call("GET", "/models/downloads")).downloads;
  }

  cancel(modelId) {
    return this._call("DELETE", `/models/${id(modelId)}/download`);
  }

  /**
   * `load(modelId, { device, quantization, numCtx })`; `numCtx`: tokens of context per
   * request (Ollama's `num_ctx`), capped by the model's training context.
   */
  load(modelId, { device, quantization, numCtx, signal } = {}) {
    const parameters = compact({ device, quantization, num_ctx: numCtx });
    return this._call("POST", "/models/load", {
      json: compact({
        model_id: modelId,
        parameters: Object.keys(parameters).length ? parameters : undefined,
      }),
      signal,
    });
  }

  unload(modelId) {
    return this._call("POST", "/models/unload", { json: { model_id: modelId } });
  }

  /** Remove a stored model from disk. */
  delete(modelId) {
    return this._call("DELETE", `/models/${id(modelId)}`);
  }
}

/**
 * AQ's chat completion, whole or streamed token by token. `responseFormat` ("json" or a JSON
 * Schema) constrains the answer (`parsed` is it decoded); `tools`, `toolChoice`,
 * `parallelToolCalls` give `toolCalls` `[{ id, name, arguments }]`, answered with
 * `toolResults: [{ toolCallId, content }]` and the `conversationId`.
 */
export class Chat extends Resource {
  /**
   * `{ prompt, modelId, parameters, conversationId, responseFormat, tools, toolChoice,
   * toolResults, signal }` (or `temperature`, `maxTokens` ... beside them) ->
   * `{ completion, modelId, usage, backend, conversationId, toolCalls?, parsed?, ... }`.
   */
  completion(options) {
    const { body, signal, responseFormat } = nativeBody(
      typeof options === "string" ? { prompt: options } : options, "model_id");
    return this._call("POST", "/chat/completion", { json: body, signal })
      .then((answer) => withParsed(answer, responseFormat));
  }

  /**
   * Tokens as they come (NDJSON); `final` is the whole answer once it has ended, with
   * `parsed` when a `responseFormat` was given.
   */
  stream(options) {
    const { body, signal, responseFormat } = nativeBody(
      typeof options === "string" ? { prompt: options } : options, "model_id");
    return this._client.openStream(`${V1}/chat/completion`, body, {
      signal, finish: (answer) => withParsed(answer, responseFormat) });
  }
}

export class Conversations extends Resource {
  async list({ limit, offset } = {}) {
    return (await this._call("GET", "/conversations", { query: { limit, offset } })).conversations;
  }

  async get(conversationId) {
    return (await this._call("GET", `/conversations/${id(conversationId)}`)).conversation;
  }

  delete(conversationId) {
    return this._call("DELETE", `/conversations/${id(conversationId)}`);
  }
}

export class System extends Resource {
  /** CPU, memory, GPU (`resources`), models loaded/cached, backends. */
  status() {
    return this._call("GET", "/system/status");
  }

  health() {
    return this._client.request("GET", "/healthz", { auth: false });
  }
}

/** Attach remote compute (admin): Colab, any Jupyter runtime, a running worker, or an
 * OpenAI-compatible server. */
export class Colab extends Resource {
  /**
   * One of `credentials: { clientId, clientSecret }` (Colab), `runtimeUrl` and `token` (a
   * Jupyter server), `workerUrl` and `workerSecret` (a worker), `openaiBaseUrl` and `apiKey`;
   * plus `modelId`, `quantization`, `tunnel`, `ngrokToken`, `name`, `timeout` (seconds the
   * launch may take). The answer's `status` may be `authorization_required` (open `authUrl`).
   */
  connect(options = {}) {
    const { signal, ...rest } = options;
    const body = toSnake(compact(rest));
    const wait = (Number(body.timeout) || CONNECT_TIMEOUT) + 60;
    return this._call("POST", "/system/colab/connect", { json: body, timeout: wait * 1000, signal });
  }

  /** Detach a worker (by `name`; the only one attached when omitted). */
  disconnect(name) {
    return this._call("DELETE", "/system/colab/connect", { query: { name } });
  }
}

/** AQ's backups (admin). */
export class Database extends Resource {
  /** A new backup; `{ offsite: "drive" }` also uploads it to the admin's Google Drive. */
  backup(options) {
    return this._call("POST", "/db/backup", options ? { json: toSnake(options) } : {});
  }

  async list() {
    return (await this._call("GET", "/db/backup")).backups;
  }

  restore(backupId) {
    return this._call("POST", `/db/restore/${id(backupId)}`);
  }
}

/** Users and the audit log (admin). */
export class Admin extends Resource {
  async users() {
    return (await this._call("GET", "/admin/users")).users;
  }

  /** `{ role, tier, rateLimit, disabled }`. */
  async updateUser(userId, fields) {
    const answer = await this._call("PATCH", `/admin/users/${Number(userId)}`, {
      json: toSnake(fields),
    });
    return answer.user;
  }

  /** `{ event, userId, limit, offset }`. */
  async audit(filters = {}) {
    return (await this._call("GET", "/audit", { query: filters })).events;
  }
}

// The WebSocket API (`/ws`): chat.stream, system.status subscriptions, model_status and
// chat_update pushes, error frames. Browsers use the platform's WebSocket (token in
// `?token=`); Node uses the `ws` package (token in the Authorization header), an optional
// peer dependency, or Node's own WebSocket where there is one.

import { toCamel } from "./case.js";
import {
  BridgeError,
  ServiceUnreachable,
  errorForCode,
  errorFromEnvelope,
} from "./errors.js";
import { nativeBody, withParsed } from "./structured.js";

const IS_NODE = typeof globalThis.process?.versions?.node === "string"
  && typeof globalThis.window === "undefined";
const WS_PACKAGE = "ws"; // a variable: bundlers for browsers leave the import alone
const OPEN = 1;

/** The WebSocket class to use, and whether it takes headers (the `ws` package does). */
async function socketClass(explicit) {
  if (explicit) return { Socket: explicit, headers: typeof explicit.prototype?.on === "function" };
  if (IS_NODE) {
    try {
      const mod = await import(WS_PACKAGE);
      const Socket = mod.WebSocket || mod.default;
      if (Socket) return { Socket, headers: true };
    } catch {
      // not installed: Node's own WebSocket, if this Node has one
    }
  }
  if (typeof globalThis.WebSocket === "function") {
    return { Socket: globalThis.WebSocket, headers: false };
  }
  throw new BridgeError(
    "no WebSocket on this platform: install the ws package (`npm install ws`)",
    { code: "NOT_SUPPORTED", status: 501 },
  );
}

/** Open `/ws` for `client`; resolves once the socket is open. */
export async function openSocket(client, { signal } = {}) {
  const token = await client.bearerToken();
  const { Socket, headers } = await socketClass(client.WebSocket);
  const url = new URL(`${client.baseUrl.replace(/^http/i, "ws")}/ws`);
  let ws;
  if (headers) {
    ws = new Socket(url.toString(), token ? { headers: { Authorization: `Bearer ${token}` } } : {});
  } else {
    if (token) url.searchParams.set("token", token);
    ws = new Socket(url.toString());
  }
  const where = `${client.baseUrl}/ws`;
  // errors are reported through the promise below, then through BridgeSocket: never thrown
  ws.addEventListener("error", () => {});
  await new Promise((resolve, reject) => {
    let refused;
    const fail = (error) => {
      cleanup();
      try {
        ws.close();
      } catch {
        // closing a socket that never opened
      }
      reject(error);
    };
    const onOpen = () => {
      cleanup();
      resolve();
    };
    const onError = (event) => {
      if (refused) return; // the typed error follows from unexpected-response
      const reason = event?.error?.code || event?.message || event?.error?.message || "refused";
      fail(new ServiceUnreachable(
        `cannot open the WebSocket at ${where} (${reason}); is the service running, and is `
        + "the token valid?",
        { details: { url: where, reason } },
      ));
    };
    const onAbort = () => fail(signal.reason);
    const cleanup = () => {
      ws.removeEventListener("open", onOpen);
      ws.removeEventListener("error", onError);
      signal?.removeEventListener("abort", onAbort);
    };
    ws.addEventListener("open", onOpen);
    ws.addEventListener("error", onError);
    if (signal) {
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    }
    if (typeof ws.once === "function") {
      // the ws package: a refused handshake carries the service's HTTP error envelope
      ws.once("unexpected-response", (_request, response) => {
        refused = true;
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk) => {
          text += chunk;
        });
        response.on("end", () => {
          let envelope;
          try {
            envelope = JSON.parse(text);
          } catch {
            envelope = { error: { message: `HTTP ${response.statusCode} from ${where}` } };
          }
          fail(errorFromEnvelope(envelope, response.statusCode, response.headers));
        });
        response.on("error", () => fail(new ServiceUnreachable(`the handshake with ${where} was cut`)));
      });
    }
  });
  return new BridgeSocket(ws, client.baseUrl);
}

/** A queue of values read by one async iterator; ends or fails once. */
class Inbox {
  constructor(onEnd) {
    this.items = [];
    this.waiters = [];
    this.ended = false;
    this.error = undefined;
    this.onEnd = onEnd;
  }

  push(value) {
    if (this.ended) return;
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve({ value, done: false });
    else this.items.push(value);
  }

  end(error) {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    const waiters = this.waiters.splice(0);
    if (error && waiters.length) this.reported = true; // raised once, to those waiting now
    for (const waiter of waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve({ value: undefined, done: true });
    }
  }

  next() {
    if (this.items.length) return Promise.resolve({ value: this.items.shift(), done: false });
    if (this.ended) {
      if (this.error && !this.reported) {
        this.reported = true; // raised once; then the iterator is simply done
        return Promise.reject(this.error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  return() {
    this.end();
    this.onEnd?.();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/**
 * Tokens of one `chat.stream` over the socket, like the HTTP ChatStream: `final`, `text`,
 * `tokens`, `switches`. Each chat has its own frame `id`, so chats on one socket run at once.
 */
export class SocketChatStream {
  constructor(socket, data, signal, responseFormat) {
    this.tokens = [];
    this.switches = [];
    this.toolCalls = []; // { id, name, arguments } as each tool call arrives
    this.final = undefined;
    this._socket = socket;
    this._data = data;
    this._signal = signal;
    this._responseFormat = responseFormat;
    this._inbox = new Inbox(() => this.close());
    this._finished = new Promise((resolve) => {
      this._finish = resolve;
    });
    this._onAbort = () => {
      this._inbox.end(signal.reason);
      this._cancel?.();
    };
    if (signal) {
      if (signal.aborted) this._inbox.end(signal.reason);
      else signal.addEventListener("abort", this._onAbort, { once: true });
    }
  }

  get text() {
    return this.tokens.join("");
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  next() {
    return this._inbox.next();
  }

  return() {
    return this._inbox.return();
  }

  /** Stop yielding tokens; the service is sent `chat.cancel` and stops generating. */
  close() {
    this._inbox.end();
    this._cancel?.();
  }

  async finalAnswer() {
    for await (const _token of this) {
      // kept in this.tokens
    }
    return this.final;
  }

  /** A frame for this chat; true once its final (or error) frame has come. */
  _frame(name, data) {
    const reading = !this._inbox.ended; // an aborted or closed chat's frames are dropped
    if (name === "chat.stream") {
      if (data.is_final) {
        if (!reading) return true;
        try { // `parsed` for a responseFormat; an answer that is not its JSON raises
          this.final = withParsed(toCamel(data), this._responseFormat);
          this._inbox.end();
        } catch (err) {
          this._inbox.end(err);
        }
        return true;
      }
      if (data.tool_call && reading) this.toolCalls.push(toCamel(data.tool_call));
      if (data.token && reading) {
        const token = String(data.token);
        this.tokens.push(token);
        this._inbox.push(token);
      }
      return false;
    }
    if (name === "backend_switched") {
      if (reading) this.switches.push(toCamel(data));
      return false;
    }
    if (name === "error") {
      this._inbox.end(socketError(data));
      return true;
    }
    return name === "chat.cancelled";
  }

  _cut(baseUrl) {
    this._inbox.end(new ServiceUnreachable(
      `the WebSocket closed before the final frame, after ${this.tokens.length} tokens from ${baseUrl}`,
      { details: { url: baseUrl, tokensReceived: this.tokens.length } },
    ));
    this._done();
  }

  _done() {
    this._signal?.removeEventListener("abort", this._onAbort);
    this._finish();
  }
}

function socketError(data) {
  const code = data?.error?.code || "";
  return errorFromEnvelope(data, errorForCode(code, 500).status);
}

/**
 * An open `/ws` connection.
 *
 *     const socket = await client.socket();
 *     for await (const token of socket.chatStream({ prompt: "Hi" })) write(token);
 *     for await (const status of socket.systemStatus({ interval: 2 })) show(status.resources);
 *     socket.on("model_status", (data) => ...); socket.on("chat_update", (data) => ...);
 *     socket.close();
 */
export class BridgeSocket {
  constructor(ws, baseUrl) {
    this._ws = ws;
    this.baseUrl = baseUrl;
    this._listeners = new Map();
    this._chats = new Map(); // frame id -> SocketChatStream
    this._nextId = 0;
    this._statusReaders = new Set();
    this._closedByUs = false;
    this.closed = new Promise((resolve) => {
      this._resolveClosed = resolve;
    });
    this.lastError = undefined;
    ws.addEventListener("message", (event) => this._message(event.data));
    ws.addEventListener("close", (event) => this._close(event));
    // A protocol or network error closes the socket (the close event follows); kept for
    // the record, never thrown (the ws package throws an error event nobody listens to).
    ws.addEventListener("error", (event) => {
      this.lastError = event?.error || event;
    });
  }

  /** Whether the socket is open. */
  get open() {
    return this._ws.readyState === OPEN;
  }

  /** Send one frame: `{event, type, data}`, and `id` when given. */
  send(event, data = {}, id = undefined) {
    if (!this.open) {
      throw new ServiceUnreachable(`the WebSocket to ${this.baseUrl} is closed`,
        { details: { url: this.baseUrl } });
    }
    this._ws.send(JSON.stringify(id === undefined ? { event, type: event, data }
      : { event, type: event, id, data }));
  }

  /**
   * Listen to pushed events by name (`model_status`, `chat_update`, `system.status`,
   * `error`, or `*` for all); the data arrives in camelCase. Returns a function that stops.
   */
  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return () => this._listeners.get(event)?.delete(listener);
  }

  /** Frames as an async iterator (`{ event, data }`), all or those named. */
  events(...names) {
    const inbox = new Inbox(() => stop());
    const stop = this.on("*", (data, event) => {
      if (!names.length || names.includes(event)) inbox.push({ event, data });
    });
    this._statusReaders.add(inbox); // ends with the socket
    return inbox;
  }

  /**
   * `chat.stream`: `{ prompt, modelId, parameters, conversationId, responseFormat, signal }`
   * -> tokens; the final answer has `parsed` when a `responseFormat` was given.
   * Aborting `signal` (or leaving the loop) stops the iteration and sends `chat.cancel`, so
   * the service stops generating. Several chats may stream on one socket at once.
   */
  chatStream(options) {
    const { body: data, signal, responseFormat } = nativeBody(
      typeof options === "string" ? { prompt: options } : options, "model_id");
    const chat = new SocketChatStream(this, data, signal, responseFormat);
    const id = `chat-${(this._nextId += 1)}`;
    chat._id = id;
    chat._cancel = () => {
      // an abort or an early exit: the service stops this generation (chat.cancelled follows)
      if (this._chats.has(id) && this.open) this.send("chat.cancel", {}, id);
    };
    if (signal?.aborted) {
      chat._done(); // aborted before it began: nothing is sent
      return chat;
    }
    this._chats.set(id, chat);
    try {
      this.send("chat.stream", data, id);
    } catch (exc) {
      chat._inbox.end(exc);
      this._chatDone(chat);
    }
    return chat;
  }

  _chatDone(chat) {
    this._chats.delete(chat._id);
    chat._done();
  }

  /**
   * `system.status` every `interval` seconds, as an async iterator of the pushed data
   * (`{ resources: {cpu, memory, gpu}, status: {...the full GET /system/status} }`);
   * leaving the loop sends `interval: 0` once no other reader is left.
   */
  systemStatus({ interval = 2 } = {}) {
    if (!(interval > 0)) throw new TypeError("interval must be a positive number of seconds");
    const inbox = new Inbox(() => {
      stop();
      this._statusReaders.delete(inbox);
      if (![...this._statusReaders].some((r) => r.status) && this.open) {
        this.send("system.status", { interval: 0 });
      }
    });
    inbox.status = true;
    inbox.pending = true; // until the first push: an error frame now is the answer to this
    const stop = this.on("system.status", (data) => {
      inbox.pending = false;
      inbox.push(data);
    });
    inbox.stop = stop;
    this._statusReaders.add(inbox);
    this.send("system.status", { interval });
    return inbox;
  }

  /** A ping answered by a pong: the service is reading this socket (and pushes reach it). */
  ping({ timeout = 10_000 } = {}) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stop();
        reject(new ServiceUnreachable(`no pong from ${this.baseUrl} in ${timeout / 1000} s`,
          { details: { url: this.baseUrl } }));
      }, timeout);
      const stop = this.on("pong", () => {
        stop();
        clearTimeout(timer);
        resolve();
      });
      try {
        this.send("ping", {});
      } catch (exc) {
        stop();
        clearTimeout(timer);
        reject(exc);
      }
    });
  }

  /** Close the socket; the service stops its generations and pushes for it. */
  close(code = 1000, reason = "") {
    this._closedByUs = true;
    if (this._ws.readyState <= OPEN) this._ws.close(code, reason);
    return this.closed;
  }

  _message(raw) {
    let frame;
    try {
      frame = JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw));
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    const name = frame.event || frame.type;
    const data = frame.data || {};
    const chat = frame.id === undefined ? undefined : this._chats.get(frame.id);
    // frames of one of our chats that has already ended (e.g. the answer to a late
    // chat.cancel) are that chat's, not the socket's
    let handled = typeof frame.id === "string" && frame.id.startsWith("chat-");
    if (chat && chat._frame(name, data)) this._chatDone(chat);
    if (!handled && name === "error") {
      for (const reader of this._statusReaders) {
        if (reader.pending) {
          handled = true; // the service refused the subscription: its reader raises it
          reader.end(socketError(data));
          reader.stop?.();
          this._statusReaders.delete(reader);
        }
      }
    }
    const camel = name === "error" ? socketError(data) : toCamel(data);
    for (const key of [name, "*"]) {
      for (const listener of this._listeners.get(key) || []) {
        if (key === "error" && handled) continue;
        try {
          listener(camel, name);
        } catch {
          // a listener's own failure is not the socket's
        }
      }
    }
  }

  _close(event) {
    const cut = !this._closedByUs;
    const chats = [...this._chats.values()];
    this._chats.clear();
    for (const chat of chats) {
      if (cut) chat._cut(this.baseUrl);
      else {
        chat._inbox.end();
        chat._done();
      }
    }
    for (const reader of this._statusReaders) {
      reader.end(cut ? new ServiceUnreachable(
        `the WebSocket to ${this.baseUrl} closed (code ${event?.code})`,
        { details: { url: this.baseUrl, code: event?.code } },
      ) : undefined);
    }
    this._statusReaders.clear();
    this._resolveClosed({ code: event?.code, reason: event?.reason });
  }
}

// Streamed answers: the service's NDJSON lines as an async iterator of tokens.

import { toCamel } from "./case.js";
import { BridgeError, ServiceUnreachable, errorFromEnvelope, errorForCode } from "./errors.js";

const NEVER = Symbol("never");

/**
 * Tokens as the service sends them; afterwards `final` holds the whole answer.
 *
 *     for await (const token of client.chat.stream({ prompt: "Hi" })) write(token);
 *
 * An error line raises its typed error; a connection cut before the final line raises
 * `ServiceUnreachable`, once. Aborting the request's `signal` rejects with the signal's
 * reason (an `AbortError`); `close()` or leaving the loop early ends quietly. Either way the
 * connection is closed, and the service stops generating for this request.
 */
export class ChatStream {
  /**
   * @param {(signal: AbortSignal) => Promise<Response>} open  sends the request
   * @param {{baseUrl: string, signal?: AbortSignal, idleTimeout?: number,
   *   finish?: (answer: object) => object}} options  `finish` completes the final answer
   *   (`parsed` for a responseFormat; it may throw, as the whole answer's would)
   */
  constructor(open, { baseUrl, signal, idleTimeout, finish } = {}) {
    this.tokens = [];
    this.switches = [];
    this.toolCalls = []; // { id, name, arguments } as each tool call arrives
    this.final = undefined;
    this._baseUrl = baseUrl;
    this._signal = signal;
    this._idleTimeout = idleTimeout;
    this._finish = finish ?? ((answer) => answer);
    this._controller = new AbortController();
    this._closed = false;
    this._stalled = false;
    this._onAbort = () => this._controller.abort(signal.reason);
    if (signal) {
      if (signal.aborted) this._controller.abort(signal.reason);
      else signal.addEventListener("abort", this._onAbort, { once: true });
    }
    this._response = open(this._controller.signal);
    this._response.catch(() => {}); // surfaced by the first next(), never unhandled
    this._iterator = this._run();
  }

  /** The answer so far. */
  get text() {
    return this.tokens.join("");
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  next() {
    return this._iterator.next();
  }

  async return(value) {
    this.close();
    await this._iterator.return(value);
    return { value, done: true };
  }

  /** Stop reading; the connection closes and the service stops this generation. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._release();
    this._controller.abort(NEVER);
  }

  /** Read to the end; the final answer (what `final` holds afterwards). */
  async finalAnswer() {
    for await (const _token of this) {
      // the tokens are kept in this.tokens
    }
    return this.final;
  }

  _release() {
    if (this._signal) this._signal.removeEventListener("abort", this._onAbort);
    clearTimeout(this._timer);
  }

  _arm() {
    clearTimeout(this._timer);
    if (!this._idleTimeout) return;
    this._timer = setTimeout(() => {
      this._stalled = true;
      this._controller.abort(NEVER);
    }, this._idleTimeout);
  }

  /** What a failed read or request means: the caller's abort, our close, or a cut. */
  _failure(exc) {
    if (this._signal?.aborted) return { error: this._signal.reason };
    if (this._stalled) {
      return { error: this._cut(`the service stopped sending (nothing for ${this._idleTimeout / 1000} s)`) };
    }
    if (this._closed) return { quiet: true };
    if (exc instanceof BridgeError) return { error: exc };
    const why = exc?.cause?.code || exc?.code || exc?.name || "error";
    return { error: this._cut(`the connection was cut (${why})`) };
  }

  _cut(what) {
    return new ServiceUnreachable(
      `${what} after ${this.tokens.length} tokens from ${this._baseUrl}`,
      { details: { url: this._baseUrl, tokensReceived: this.tokens.length } },
    );
  }

  async *_run() {
    let reader;
    try {
      this._arm();
      let response;
      try {
        response = await this._response;
        clearTimeout(this._timer);
      } catch (exc) {
        const failure = this._failure(exc);
        if (failure.quiet) return;
        throw failure.error;
      }
      reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        let chunk;
        try {
          this._arm();
          chunk = await reader.read();
          clearTimeout(this._timer);
        } catch (exc) {
          const failure = this._failure(exc);
          if (failure.quiet) return;
          throw failure.error;
        }
        if (this._closed && !this._stalled) return;
        if (chunk.done) {
          buffer += decoder.decode();
        } else {
          buffer += decoder.decode(chunk.value, { stream: true });
        }
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0 || (chunk.done && buffer)) {
          const line = newline >= 0 ? buffer.slice(0, newline) : buffer;
          buffer = newline >= 0 ? buffer.slice(newline + 1) : "";
          const step = this._line(line);
          if (step === undefined) continue;
          if (step.final) return;
          if (this._closed) return;
          yield step.token;
          if (this._signal?.aborted) throw this._signal.reason; // aborted while we waited
        }
        if (chunk.done) {
          throw this._cut("the stream ended before its final line");
        }
      }
    } finally {
      this._closed = true;
      this._release();
      if (reader) reader.cancel().catch(() => {});
      this._controller.abort(NEVER);
    }
  }

  /** One NDJSON line: a token, the final answer, or nothing to yield. */
  _line(line) {
    if (!line.trim()) return undefined;
    let event;
    try {
      event = JSON.parse(line);
    } catch {
      throw new BridgeError(`the service sent a line that is not JSON: ${JSON.stringify(line.slice(0, 100))}`);
    }
    if (!event || typeof event !== "object") return undefined;
    if ("error" in event) {
      const code = event.error && typeof event.error === "object" ? event.error.code : "";
      throw errorFromEnvelope(event, errorForCode(code, 500).status);
    }
    if (event.event === "backend_switched") {
      this.switches.push(toCamel(event));
      return undefined;
    }
    if (event.tool_call && typeof event.tool_call === "object") {
      this.toolCalls.push(toCamel(event.tool_call));
      return undefined;
    }
    if (event.is_final) {
      this.final = this._finish(toCamel(event));
      return { final: true };
    }
    if (event.token) {
      const token = String(event.token);
      this.tokens.push(token);
      return { token };
    }
    return undefined;
  }
}

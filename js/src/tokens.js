// `client.tokens`: a model's token ids for a text (POST /api/v1/tokenize, /api/v1/detokenize),
// to check a prompt against the context before sending it.

import { compact } from "./case.js";
import { Resource } from "./resources.js";

export class Tokens extends Resource {
  /**
   * `tokenize(text, { model, messages, signal })` (text or chat messages, rendered with the
   * model's template) -> `{ model, tokens, count, context }`.
   */
  tokenize(text, { model, messages, signal } = {}) {
    return this._call("POST", "/tokenize", { json: compact({ text, model, messages }), signal });
  }

  /** `detokenize(tokens, { model, signal })` -> the text. */
  async detokenize(tokens, { model, signal } = {}) {
    const answer = await this._call("POST", "/detokenize", { json: compact({ tokens, model }), signal });
    return answer.text;
  }
}

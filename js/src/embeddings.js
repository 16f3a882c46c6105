// `client.embeddings`: vectors for texts from an embedding model (POST /api/v1/embeddings).

import { compact } from "./case.js";
import { Resource } from "./resources.js";

/**
 * The service's default embedding model is all-minilm-l6-v2: 384 numbers a text,
 * mean-pooled and normalized, so a dot product is the cosine similarity.
 */
export class Embeddings extends Resource {
  /**
   * `create(input, { model, dimensions, truncate, signal })` -> `{ embeddings, model,
   * dimensions, usage: { promptTokens, totalTokens }, backend, engine, metrics }`.
   */
  create(input, { model, dimensions, truncate, signal } = {}) {
    const json = compact({ input, model, dimensions, truncate });
    return this._call("POST", "/embeddings", { json, signal });
  }
}

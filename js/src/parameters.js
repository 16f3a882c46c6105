// The native `parameters` object's sampling options, from camelCase shortcuts.

import { snakeKey } from "./case.js";

const PARAMETERS = new Set(["temperature", "top_p", "top_k", "max_tokens", "stop", "seed"]);

/**
 * `parameters` merged with shortcuts (`temperature: 0`), keys in the service's snake_case;
 * undefined when empty. Unknown names are a TypeError, as in the Python SDK.
 */
export function parametersOf(parameters, shortcuts = {}) {
  const merged = {};
  for (const [key, value] of Object.entries({ ...(parameters || {}), ...shortcuts })) {
    const name = snakeKey(key);
    if (!PARAMETERS.has(name)) {
      throw new TypeError(
        `unknown parameter ${key}; known: maxTokens, seed, stop, temperature, topK, topP`,
      );
    }
    if (value !== undefined && value !== null) merged[name] = value;
  }
  return Object.keys(merged).length ? merged : undefined;
}

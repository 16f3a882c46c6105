// Keys between the service's snake_case and JavaScript's camelCase.

/** Object keys whose values are the caller's own data: their keys are never renamed. */
const OPAQUE = new Set(["otherPreferences", "other_preferences", "headers", "arguments"]);

/** `conversation_id` -> `conversationId` (leading underscores and digits are kept). */
export function camelKey(key) {
  return key.replace(/(?<=[a-z0-9])_([a-z0-9])/gi, (_m, c) => c.toUpperCase());
}

/** `conversationId` -> `conversation_id`; keys already in snake_case pass unchanged. */
export function snakeKey(key) {
  return key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

function convert(value, rename) {
  if (Array.isArray(value)) return value.map((item) => convert(item, rename));
  if (value === null || typeof value !== "object" || !isPlain(value)) return value;
  const out = {};
  for (const [key, item] of Object.entries(value)) {
    const name = rename(key);
    out[name] = OPAQUE.has(key) || OPAQUE.has(name) ? item : convert(item, rename);
  }
  return out;
}

function isPlain(value) {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A JSON answer with every key in camelCase (recursively; user data left alone). */
export function toCamel(value) {
  return convert(value, camelKey);
}

/** A request body with every key in snake_case (recursively; user data left alone). */
export function toSnake(value) {
  return convert(value, snakeKey);
}

/** A body without the fields left undefined (or null). */
export function compact(fields) {
  const out = {};
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined && value !== null) out[key] = value;
  }
  return out;
}

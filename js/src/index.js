// compute-bridge: the JavaScript SDK of Compute Bridge (browsers and Node >= 20).

export { Client, DEFAULT_BASE_URL, VERSION, normalizeBaseUrl } from "./client.js";
export { ChatStream } from "./stream.js";
export { Embeddings } from "./embeddings.js";
export { Tokens } from "./tokens.js";
export { BridgeSocket, SocketChatStream } from "./socket.js";
export {
  Admin, Auth, Chat, Colab, Conversations, Database, DownloadProgress, Models, System, User,
} from "./resources.js";
export {
  BackendUnavailable,
  BridgeError,
  Conflict,
  ContextLengthExceeded,
  DownloadFailed,
  ERROR_CLASSES,
  Forbidden,
  MethodNotAllowed,
  ModelNotFound,
  ModelTypeMismatch,
  NotFound,
  NotSupported,
  PayloadTooLarge,
  RateLimited,
  RateLimitExceeded,
  ServiceUnreachable,
  Unauthorized,
  ValidationError,
  errorForCode,
  errorFromEnvelope,
} from "./errors.js";
export { camelKey, snakeKey, toCamel, toSnake } from "./case.js";

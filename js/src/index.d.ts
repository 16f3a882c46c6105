// Type declarations of compute-bridge, the JavaScript SDK of Compute Bridge.
// Answers are the service's JSON with every key in camelCase; fields the documents promise
// are named here, and every answer may carry more (an index signature keeps them readable).

export declare const VERSION: string;
export declare const DEFAULT_BASE_URL: string;

/** The service root: accepts AQ's `.../api/v1`, FT's `.../api` and `.../v1` too. */
export declare function normalizeBaseUrl(url: string): string;

// -- answers -------------------------------------------------------------------------------

/** Any JSON object from the service, keys in camelCase. */
export interface Answer {
  [key: string]: any;
}

export interface Usage extends Answer {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** FT's shape (generate): completion tokens. */
  tokens?: number;
  /** FT's shape (generate): ISO 8601 duration. */
  time?: string;
}

export interface Metrics extends Answer {
  /** ISO 8601 duration, e.g. `PT0.4S`. */
  responseTime: string;
  tokensPerSecond: number | null;
}

export interface CacheInfo extends Answer {
  status: "HIT" | "MISS";
  ttl: string;
}

export interface BackendSwitch extends Answer {
  from: string;
  to: string;
  reason?: string;
}

/** A tool call of an answer: its id (for `toolResults`), the function's name, its arguments. */
export interface ToolCall {
  id: string;
  name: string;
  /** The arguments, an object (its keys as the function's schema spells them). */
  arguments: Record<string, unknown>;
}

interface GenerationExtras extends Answer {
  usage: Usage;
  /** The tool calls, when the model called tools (`finishReason: "tool_calls"`). */
  toolCalls?: ToolCall[];
  /** The answer decoded as JSON, when a `responseFormat` other than "text" was asked. */
  parsed?: unknown;
  /** `local`, or the name of the worker that answered. */
  backend: string;
  conversationId: string;
  finishReason?: string;
  metrics?: Metrics;
  cache?: CacheInfo;
  promptTruncated?: boolean;
  backendSwitches?: BackendSwitch[];
}

/** AQ's chat completion. */
export interface Completion extends GenerationExtras {
  completion: string;
  modelId: string;
}

/** FT's generate answer. */
export interface Generation extends GenerationExtras {
  response: string;
  model: string;
}

export interface Model extends Answer {
  id: string;
  name: string;
  type: string;
  status: string;
  size?: string | null;
  family?: string | null;
  parameters: Answer & {
    temperature?: number;
    topP?: number;
    topK?: number;
    size?: string;
    quantization?: string;
    framework?: string;
  };
}

export interface DownloadJob extends Answer {
  modelId: string;
  jobId?: string;
  /** `downloading`, `completed`, `failed`, `cancelled`, `ready`, `downloadable`, ... */
  status: string;
  /** 0 to 1. */
  progress: number;
  /** ISO 8601 duration, or `unknown`. */
  eta: string;
  etaSeconds?: number | null;
  /** e.g. `45MB/s`. */
  speed: string;
  bytesDone?: number;
  bytesTotal?: number | null;
  error?: Answer & { code: string; errorType?: string; message?: string };
}

export interface LoadResult extends Answer {
  status: string;
  modelId: string;
  loadTime: number;
  /** Tokens of context per request the model is loaded with. */
  numCtx?: number | null;
}

export interface Message extends Answer {
  role: string;
  content: string;
  /** ISO 8601 with offset. */
  timestamp: string;
  backend?: string | null;
}

export interface Conversation extends Answer {
  id: string;
  title?: string | null;
  model?: string | null;
  createdAt: string;
  updatedAt?: string | null;
  messageCount?: number;
  messages?: Message[];
}

export interface Backend extends Answer {
  name: string;
  kind: "local" | "worker" | "openai" | string;
  url?: string;
  healthy: boolean;
  latencyMs?: number | null;
  models?: string[];
  runtimeInfo?: Answer | null;
}

export interface SystemStatus extends Answer {
  status: string;
  resources: Answer & {
    cpu: Answer & { usage: number; temperature?: number | null };
    memory: Answer & { total: number; used: number; free: number };
    gpu: (Answer & { usage?: number | null; memoryUsed?: number; memoryTotal?: number }) | null;
  };
  models: Answer & { loaded: string[]; cached: string[] };
  backends: Backend[];
}

export interface LoginAnswer extends Answer {
  message?: string;
  userId?: number;
  accessToken: string;
  refreshToken?: string;
  tokenType: "bearer";
  expiresIn: number;
}

export interface Session extends Answer {
  userId: number | null;
  username: string | null;
  isAuthenticated: boolean;
  role?: string;
  tier?: string;
}

export interface ApiKey extends Answer {
  id: string;
  name: string;
  prefix: string;
  /** The secret: only in the answer that created it. */
  key?: string;
  createdAt: string;
  lastUsedAt?: string | null;
  revoked?: boolean;
}

export interface Profile extends Answer {
  id: number;
  username: string;
  email?: string;
  role?: string;
  tier?: string;
  preferences?: Preferences;
}

export interface Preferences {
  theme?: "light" | "dark" | "system";
  defaultModel?: string | null;
  /** Your own keys, sent and returned as they are. */
  otherPreferences?: Record<string, unknown>;
}

export interface ConnectResult extends Answer {
  status: "connected" | "authorization_required" | "notebook_uploaded" | string;
  worker?: string;
  runtimeInfo?: (Answer & { type?: string; gpu?: string; memory?: number }) | null;
  authUrl?: string;
  colabUrl?: string;
}

export interface Backup extends Answer {
  id?: string;
  backupId?: string;
  timestamp: string;
  size?: number;
  status: string;
  restoredAt?: string;
}

// -- requests ------------------------------------------------------------------------------

/** Sampling parameters (camelCase or the service's snake_case). */
export interface Parameters {
  temperature?: number;
  topP?: number;
  topK?: number;
  maxTokens?: number;
  stop?: string | string[];
  seed?: number;
  top_p?: number;
  top_k?: number;
  max_tokens?: number;
}

/** A JSON Schema (draft 2020-12; drafts 7 and 2019-09 documents' common keywords too). */
export type JsonSchema = Record<string, unknown>;

/** `"text"` (the default), `"json"` (any JSON object) or a JSON Schema the answer matches. */
export type ResponseFormat = "text" | "json" | JsonSchema;

/** A function the model may call: OpenAI's shape, or the function alone. */
export type Tool =
  | { type: "function"; function: { name: string; description?: string; parameters?: JsonSchema } }
  | { name: string; description?: string; parameters?: JsonSchema };

/** `"auto"` (the default), `"none"`, `"required"`, or the name of the function to call. */
export type ToolChoice = "auto" | "none" | "required" | (string & {});

/** The result of a tool call, sent back with the answer's `conversationId`. */
export interface ToolResult {
  toolCallId: string;
  content: string;
}

export interface ChatOptions extends Parameters {
  /** Required, unless `toolResults` answer the calls of `conversationId`. */
  prompt?: string;
  modelId?: string;
  /** FT's name for modelId. */
  model?: string;
  parameters?: Parameters;
  conversationId?: string;
  /** Constrains the answer (constrained decoding); the answer's `parsed` is it decoded. */
  responseFormat?: ResponseFormat;
  tools?: Tool[];
  toolChoice?: ToolChoice;
  /** false: one tool call at most. */
  parallelToolCalls?: boolean;
  toolResults?: ToolResult[];
  signal?: AbortSignal;
}

export interface GenerateOptions extends ChatOptions {
  stream?: boolean;
}

export interface ClientOptions {
  /** Default `$BRIDGE_URL` (Node), else `http://127.0.0.1:5000`. */
  baseUrl?: string;
  /** Default `$BRIDGE_API_KEY` (Node) when no username or access token is given. */
  apiKey?: string;
  /** Logged in on first use; the tokens are renewed when the service answers 401. */
  username?: string;
  password?: string;
  accessToken?: string;
  refreshToken?: string;
  /** Milliseconds a call may take (for streams: the longest silence); 0 for none. */
  timeout?: number;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  fetch?: typeof globalThis.fetch;
  /** A WebSocket class (default: the `ws` package in Node, the platform's in browsers). */
  WebSocket?: unknown;
}

export interface RequestOptions {
  /** Sent as JSON, as is (the service's snake_case keys). */
  json?: unknown;
  query?: Record<string, string | number | boolean | null | undefined>;
  auth?: boolean;
  signal?: AbortSignal;
  /** Milliseconds. */
  timeout?: number;
}

export interface DownloadSource {
  /** `registry`, `huggingface`, `url`, `path`. */
  source?: string;
  repoId?: string;
  revision?: string;
  url?: string;
  sha256?: string;
  path?: string;
  include?: string[];
  [key: string]: unknown;
}

export interface DownloadOptions extends DownloadSource {
  /** Milliseconds between polls (default 500). */
  pollInterval?: number;
  /** Milliseconds the job may take before DownloadFailed (`errorType: "TIMEOUT"`). */
  timeout?: number;
  signal?: AbortSignal;
}

export interface ConnectOptions {
  credentials?: { clientId: string; clientSecret: string };
  accelerator?: string;
  runtimeUrl?: string;
  token?: string;
  headers?: Record<string, string>;
  workerUrl?: string;
  workerSecret?: string;
  openaiBaseUrl?: string;
  apiKey?: string;
  name?: string;
  modelId?: string;
  quantization?: string;
  tunnel?: "ngrok" | "none";
  ngrokToken?: string;
  /** Seconds the connect may take (1-600). */
  timeout?: number;
  readTimeout?: number;
  manual?: boolean;
  signal?: AbortSignal;
  [key: string]: unknown;
}

// -- streams -------------------------------------------------------------------------------

/** Tokens as the service sends them (NDJSON over fetch); then `final` holds the answer. */
export declare class ChatStream<Final extends Answer = Completion>
  implements AsyncIterableIterator<string> {
  readonly tokens: string[];
  readonly switches: BackendSwitch[];
  /** The tool calls, as each arrives. */
  readonly toolCalls: ToolCall[];
  /** The whole answer, once the final line has come (`parsed` when a `responseFormat` was given). */
  readonly final: Final | undefined;
  /** The answer so far. */
  readonly text: string;
  next(): Promise<IteratorResult<string, undefined>>;
  return(value?: unknown): Promise<IteratorResult<string, undefined>>;
  [Symbol.asyncIterator](): ChatStream<Final>;
  /** Stop reading; the service stops this generation. */
  close(): void;
  /** Read to the end; the final answer. */
  finalAnswer(): Promise<Final>;
}

/** A download job, followed by polling: iterate for progress, await for the end. */
export declare class DownloadProgress implements AsyncIterable<DownloadJob>, PromiseLike<DownloadJob> {
  readonly modelId: string;
  /** Send the POST (once); the job as it started. */
  start(): Promise<DownloadJob>;
  [Symbol.asyncIterator](): AsyncIterator<DownloadJob>;
  wait(): Promise<DownloadJob>;
  then<A = DownloadJob, B = never>(
    onFulfilled?: ((job: DownloadJob) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B>;
  catch<B = never>(onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<DownloadJob | B>;
  cancel(): Promise<DownloadJob>;
}

// -- resources -----------------------------------------------------------------------------

export declare class Auth {
  register(options: { username: string; email: string; password: string }): Promise<Answer & { message: string; userId: number }>;
  register(username: string, email: string, password: string): Promise<Answer & { message: string; userId: number }>;
  login(options: { username: string; password: string }): Promise<LoginAnswer>;
  login(username: string, password: string): Promise<LoginAnswer>;
  loginOrRegister(options: { username: string; password: string; email?: string }): Promise<LoginAnswer>;
  loginOrRegister(username: string, password: string, email?: string): Promise<LoginAnswer>;
  refresh(): Promise<LoginAnswer>;
  logout(): Promise<Answer>;
  session(): Promise<Session>;
  createApiKey(name?: string): Promise<ApiKey & { key: string }>;
  listApiKeys(): Promise<ApiKey[]>;
  revokeApiKey(keyId: string): Promise<Answer>;
}

export declare class User {
  profile(): Promise<Profile>;
  updatePreferences(preferences: Preferences): Promise<Answer>;
}

export declare class Models {
  list(): Promise<Model[]>;
  status(modelId: string, options?: { signal?: AbortSignal }): Promise<DownloadJob>;
  download(modelId: string, options?: DownloadOptions): DownloadProgress;
  downloads(): Promise<DownloadJob[]>;
  cancel(modelId: string): Promise<DownloadJob>;
  /** `numCtx`: tokens of context per request (Ollama's `num_ctx`), capped by the model's training context. */
  load(modelId: string, options?: { device?: "auto" | "cpu" | "cuda" | string; quantization?: string; numCtx?: number; signal?: AbortSignal }): Promise<LoadResult>;
  unload(modelId: string): Promise<Answer & { status: string; modelId: string }>;
  delete(modelId: string): Promise<Answer & { status: string; modelId: string }>;
}

export declare class Chat {
  completion(options: ChatOptions | string): Promise<Completion>;
  stream(options: ChatOptions | string): ChatStream<Completion>;
}

/** `client.embeddings.create(...)`: one vector per input, in input order. */
export interface EmbeddingResult extends Answer {
  embeddings: number[][];
  model: string;
  dimensions: number;
  usage: { promptTokens: number; totalTokens: number };
  backend: string;
  engine?: string;
  metrics: { responseTime: string };
}

export declare class Embeddings {
  /** POST /api/v1/embeddings. `model` defaults to the service's embedding model
   * (all-minilm-l6-v2: 384 numbers a text, normalized). Throws ModelTypeMismatch for a model
   * that does not embed, ValidationError for `dimensions` the model cannot give. */
  create(input: string | string[], options?: {
    model?: string; dimensions?: number; truncate?: boolean; signal?: AbortSignal;
  }): Promise<EmbeddingResult>;
}

/** `client.tokens.tokenize(...)`: token ids, their count and the model's context. */
export interface Tokenized extends Answer {
  model: string;
  tokens: number[];
  count: number;
  context: number;
}

export declare class Tokens {
  tokenize(text?: string, options?: {
    model?: string; messages?: { role: string; content: string }[]; signal?: AbortSignal;
  }): Promise<Tokenized>;
  detokenize(tokens: number[], options?: { model?: string; signal?: AbortSignal }): Promise<string>;
}

export declare class Conversations {
  list(options?: { limit?: number; offset?: number }): Promise<Conversation[]>;
  get(conversationId: string): Promise<Conversation>;
  delete(conversationId: string): Promise<Answer>;
}

export declare class System {
  status(): Promise<SystemStatus>;
  health(): Promise<Answer & { status: string }>;
}

export declare class Colab {
  connect(options: ConnectOptions): Promise<ConnectResult>;
  disconnect(name?: string): Promise<Answer & { status: string; worker: string }>;
}

export declare class Database {
  backup(options?: { offsite?: "drive" }): Promise<Backup>;
  list(): Promise<Backup[]>;
  restore(backupId: string): Promise<Backup>;
}

export declare class Admin {
  users(): Promise<Profile[]>;
  updateUser(userId: number, fields: { role?: string; tier?: "free" | "pro" | "enterprise"; rateLimit?: string | null; disabled?: boolean }): Promise<Profile>;
  audit(filters?: { event?: string; userId?: number; limit?: number; offset?: number }): Promise<Answer[]>;
}

// -- WebSocket -----------------------------------------------------------------------------

export interface StatusPush extends Answer {
  resources: Answer & { cpu: number; memory: number; gpu: number | null };
  status: SystemStatus;
}

export interface ModelStatusPush extends Answer {
  modelId: string;
  status: string;
  progress?: number;
}

export interface ChatUpdatePush extends Answer {
  conversationId: string;
  message: Message;
}

export interface SocketEvents {
  "system.status": StatusPush;
  model_status: ModelStatusPush;
  chat_update: ChatUpdatePush;
  backend_switched: BackendSwitch;
  "chat.stream": Answer;
  "chat.cancelled": { tokens: number };
  error: BridgeError;
  [name: string]: unknown;
}

/** Tokens of one `chat.stream` over the socket; then `final` holds the answer. */
export declare class SocketChatStream implements AsyncIterableIterator<string> {
  readonly tokens: string[];
  readonly switches: BackendSwitch[];
  /** The tool calls, as each arrives. */
  readonly toolCalls: ToolCall[];
  readonly final: Completion | undefined;
  readonly text: string;
  next(): Promise<IteratorResult<string, undefined>>;
  return(): Promise<IteratorResult<string, undefined>>;
  [Symbol.asyncIterator](): SocketChatStream;
  close(): void;
  finalAnswer(): Promise<Completion>;
}

/** An open `/ws` connection. */
export declare class BridgeSocket {
  readonly baseUrl: string;
  readonly open: boolean;
  /** Settles when the socket has closed. */
  readonly closed: Promise<{ code?: number; reason?: string }>;
  /** Send one frame; `id` ties it to a chat (`chat.cancel`). */
  send(event: string, data?: Record<string, unknown>, id?: string | number): void;
  on<K extends keyof SocketEvents & string>(event: K | "*", listener: (data: SocketEvents[K], event: string) => void): () => void;
  events(...names: string[]): AsyncIterableIterator<{ event: string; data: unknown }>;
  chatStream(options: ChatOptions | string): SocketChatStream;
  systemStatus(options?: { interval?: number }): AsyncIterableIterator<StatusPush>;
  /** Resolves when the service answers a ping (pushes from then on reach this socket). */
  ping(options?: { timeout?: number }): Promise<void>;
  close(code?: number, reason?: string): Promise<{ code?: number; reason?: string }>;
}

// -- the client ----------------------------------------------------------------------------

export declare class Client {
  constructor(apiKey?: string, options?: ClientOptions);
  constructor(options?: ClientOptions);
  readonly baseUrl: string;
  apiKey: string | undefined;
  username: string | undefined;
  accessToken: string | undefined;
  refreshToken: string | undefined;
  timeout: number;
  readonly auth: Auth;
  readonly user: User;
  readonly models: Models;
  readonly chat: Chat;
  readonly embeddings: Embeddings;
  readonly tokens: Tokens;
  readonly conversations: Conversations;
  readonly system: System;
  readonly colab: Colab;
  readonly db: Database;
  readonly admin: Admin;
  /** FT's `POST /generate`. */
  generate(options: GenerateOptions & { stream: true }): ChatStream<Generation>;
  generate(options: GenerateOptions & { stream?: false }): Promise<Generation>;
  generate(prompt: string, model?: string): Promise<Generation>;
  /** Open the WebSocket `/ws`. */
  socket(options?: { signal?: AbortSignal }): Promise<BridgeSocket>;
  /** One call to the API: its JSON answer in camelCase, or the typed error it carried. */
  request<T = Answer>(method: string, path: string, options?: RequestOptions): Promise<T>;
  openStream<Final extends Answer = Completion>(path: string, body: Record<string, unknown>, options?: { signal?: AbortSignal; finish?: (answer: Final) => Final }): ChatStream<Final>;
  login(username: string, password: string): Promise<LoginAnswer>;
  bearerToken(): Promise<string | undefined>;
  storeTokens(answer: { accessToken: string; refreshToken?: string }): void;
  forgetCredentials(): void;
}

// -- errors --------------------------------------------------------------------------------

export interface ErrorOptions {
  details?: Record<string, any>;
  headers?: Record<string, string>;
  status?: number;
  code?: string;
  requestId?: string;
  cause?: unknown;
}

/** Root of every error the SDK raises; chosen by the envelope's `code`. */
export declare class BridgeError extends Error {
  static readonly status: number;
  static readonly code: string;
  static readonly defaultMessage: string;
  constructor(message?: string, options?: ErrorOptions);
  /** The envelope's code, e.g. `MODEL_NOT_FOUND`. */
  code: string;
  /** The HTTP status. */
  status: number;
  /** The envelope's details, keys in camelCase (`details.field`, `details.modelId`). */
  details: Record<string, any>;
  /** `retry-after` and `x-request-id`, when the answer had them. */
  headers: Record<string, string>;
  requestId: string | undefined;
  toJSON(): { error: { code: string; message: string; details?: Record<string, any>; request_id?: string } };
}
export declare class ValidationError extends BridgeError {}
/** The prompt plus `maxTokens` does not fit the model's context (`details.promptTokens`,
 * `details.maxTokens`, `details.context`). */
export declare class ContextLengthExceeded extends ValidationError {}
/** An embedding model asked to generate text, or a text model asked to embed. */
export declare class ModelTypeMismatch extends ValidationError {}
export declare class Unauthorized extends BridgeError {}
export declare class Forbidden extends BridgeError {}
export declare class NotFound extends BridgeError {}
export declare class ModelNotFound extends NotFound {}
export declare class MethodNotAllowed extends BridgeError {}
export declare class Conflict extends BridgeError {}
export declare class PayloadTooLarge extends BridgeError {}
export declare class RateLimitExceeded extends BridgeError {
  /** Seconds to wait before trying again. */
  readonly retryAfter: number | undefined;
}
/** The same class as RateLimitExceeded. */
export declare const RateLimited: typeof RateLimitExceeded;
export type RateLimited = RateLimitExceeded;
export declare class NotSupported extends BridgeError {}
export declare class DownloadFailed extends BridgeError {}
export declare class BackendUnavailable extends BridgeError {}
/** Cannot connect, timed out, or the connection was cut mid-stream (raised once). */
export declare class ServiceUnreachable extends BridgeError {}

export declare const ERROR_CLASSES: ReadonlyArray<typeof BridgeError>;
export declare function errorForCode(code: string, status?: number): typeof BridgeError;
export declare function errorFromEnvelope(envelope: unknown, status: number, headers?: Headers | Record<string, string>): BridgeError;

export declare function camelKey(key: string): string;
export declare function snakeKey(key: string): string;
export declare function toCamel<T = any>(value: unknown): T;
export declare function toSnake<T = any>(value: unknown): T;

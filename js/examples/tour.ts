// A tour of the SDK, type-checked by `npm run lint` (tsc --noEmit).
import {
  BridgeError,
  Client,
  ModelNotFound,
  RateLimited,
  ServiceUnreachable,
  ValidationError,
  type Completion,
  type DownloadJob,
} from "compute-bridge";

let transcript = "";
const write = (text: string) => {
  transcript += text;
};

const client = new Client({ baseUrl: "http://127.0.0.1:5000", username: "alice", password: "correct horse" });
await client.auth.loginOrRegister("alice", "correct horse", "alice@example.org");
const key = await client.auth.createApiKey("notebook");
const keyed = new Client(key.key, { baseUrl: client.baseUrl });

const reply: Completion = await keyed.chat.completion({
  prompt: "What is the capital of France?",
  modelId: "smollm2-135m-instruct",
  parameters: { temperature: 0, maxTokens: 16 },
});
console.log(reply.completion, reply.usage.totalTokens, reply.backend, reply.conversationId);

// Streaming over HTTP (NDJSON), cancellable
const controller = new AbortController();
const stream = keyed.chat.stream({ prompt: "Tell me a story.", maxTokens: 16, signal: controller.signal });
for await (const token of stream) {
  write(token);
}
console.log(transcript, stream.final?.usage.completionTokens);

// FT's shape
const generated = await keyed.generate("Write a haiku", "smollm2-135m-instruct");
console.log(generated.response);
const streamed = keyed.generate({ prompt: "Count to three", stream: true });
console.log((await streamed.finalAnswer()).response);

// Models
for (const model of await keyed.models.list()) console.log(model.id, model.status, model.parameters.framework);
for await (const job of keyed.models.download("smollm2-360m-instruct", { source: "registry" })) {
  const state: DownloadJob = job;
  console.log(`${Math.round(state.progress * 100)}% ${state.eta}`);
}
await keyed.models.load("smollm2-135m-instruct", { device: "cpu", quantization: "none" });

// Conversations and status
const conversations = await keyed.conversations.list({ limit: 10 });
if (conversations[0]) console.log((await keyed.conversations.get(conversations[0].id)).messages?.length);
const status = await keyed.system.status();
console.log(status.resources.cpu.usage, status.models.loaded, status.backends.map((b) => b.name));

// WebSocket
const socket = await keyed.socket();
socket.on("model_status", (data) => console.log(data.modelId, data.status, data.progress));
socket.on("chat_update", (data) => console.log(data.conversationId, data.message.content));
for await (const token of socket.chatStream({ prompt: "Hello!", maxTokens: 8 })) write(token);
for await (const push of socket.systemStatus({ interval: 1 })) {
  console.log(push.resources.cpu);
  break;
}
await socket.close();

// Admin
await client.colab.connect({ workerUrl: "http://gpu-box:8765", workerSecret: "..." });
await client.colab.disconnect();
const backup = await client.db.backup();
console.log((await client.db.list()).length, backup.backupId);

// Errors
try {
  await keyed.chat.completion({ prompt: "Hi", modelId: "llama-9000" });
} catch (exc) {
  if (exc instanceof ModelNotFound) console.log(exc.details.modelId);
  else if (exc instanceof RateLimited) console.log("wait", exc.retryAfter, "s");
  else if (exc instanceof ValidationError) console.log(exc.details.field);
  else if (exc instanceof ServiceUnreachable) console.log(exc.message);
  else if (exc instanceof BridgeError) console.log(exc.code, exc.status, exc.message, exc.requestId);
  else throw exc;
}

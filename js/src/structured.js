// Structured outputs and tools: the native body's `parameters.response_format`, `tools`,
// `tool_choice`, `parallel_tool_calls`, and `tool_results` beside the prompt (the service's
// shapes: docs/structured-outputs.md). Schemas and tools are sent as given (never re-cased).

import { compact } from "./case.js";
import { parametersOf } from "./parameters.js";
import { BridgeError } from "./errors.js";

/**
 * A native generation body from `{ prompt, modelId | model, parameters, conversationId,
 * responseFormat, tools, toolChoice, parallelToolCalls, toolResults, signal, ...shortcuts }`.
 * `modelKey` is the document's name for the model (`model_id` for AQ, `model` for FT).
 */
export function nativeBody(options, modelKey) {
  const { prompt, modelId, model, parameters, conversationId, signal, responseFormat, tools,
    toolChoice, parallelToolCalls, toolResults, stream, ...shortcuts } = options;
  const merged = {
    ...(parametersOf(parameters, shortcuts) || {}),
    ...compact({
      response_format: responseFormat,
      tools,
      tool_choice: toolChoice,
      parallel_tool_calls: parallelToolCalls,
    }),
  };
  const body = compact({
    prompt,
    [modelKey]: modelId ?? model,
    conversation_id: conversationId,
    parameters: Object.keys(merged).length ? merged : undefined,
    tool_results: toolResults?.map((r) => ({
      tool_call_id: r.toolCallId ?? r.tool_call_id,
      content: r.content,
    })),
  });
  return { body, signal, stream, responseFormat };
}

/**
 * `answer` with `parsed`: its text decoded as JSON when a `responseFormat` other than "text"
 * was asked. An answer cut by maxTokens (`finishReason: "length"`) is a BridgeError.
 */
export function withParsed(answer, responseFormat) {
  if (responseFormat === undefined || responseFormat === null || responseFormat === "text") {
    return answer;
  }
  if (answer.finishReason === "length") {
    throw new BridgeError("the answer was cut by maxTokens before its JSON was whole; raise maxTokens",
      { details: { finishReason: "length" } });
  }
  const text = answer.completion ?? answer.response ?? "";
  try {
    answer.parsed = JSON.parse(text);
  } catch {
    throw new BridgeError("the answer is not the JSON its responseFormat asked for",
      { details: { text: text.slice(0, 200) } });
  }
  return answer;
}

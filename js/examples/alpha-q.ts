import { Client as AlphaQClient } from "compute-bridge";

const client = new AlphaQClient("your_api_key");

// Chat completion
const response = await client.chat.completion({
  prompt: "Hello, how are you?",
  modelId: "gpt-3.5-turbo",
});
console.log(response.completion);

// System status
const status = await client.system.status();
console.log(status.resources);

// The Vercel AI SDK as a client of the gateway: `streamText` with `openai(model)` (the
// Responses API, @ai-sdk/openai's default) whose provider's baseURL is the gateway.
//
//   node stream_text.mjs BASE_URL MODEL [tools]
//
// Prints one JSON line: {"text", "finishReason", "parts", "errors", "toolCalls"}; `parts` are
// the types of the full stream's parts in order, `errors` the messages of its error parts (or
// of what the stream threw), `toolCalls` the {toolName, input} of its tool-call parts (with
// `tools`, the model is offered a `get_weather(city)` tool it may call; it is not executed).
// Exits 0 whatever the stream did: the test judges what the SDK reported.
import { createOpenAI } from '@ai-sdk/openai';
import { jsonSchema, streamText, tool } from 'ai';

const [baseURL, model, withTools] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey: 'client-key' });
const tools = withTools === 'tools'
  ? {
      get_weather: tool({
        description: 'The weather in a city',
        inputSchema: jsonSchema({
          type: 'object',
          properties: { city: { type: 'string' } },
          required: ['city'],
        }),
      }),
    }
  : undefined;
const result = streamText({
  model: openai(model),
  prompt: 'hi there',
  tools,
  maxRetries: 0,
  onError: () => {}, // the errors are read from the stream below
});

const report = { text: '', finishReason: null, parts: [], errors: [], toolCalls: [] };
const messageOf = (error) => String(error?.message ?? error);
try {
  for await (const part of result.fullStream) {
    report.parts.push(part.type);
    if (part.type === 'text-delta') report.text += part.text;
    if (part.type === 'error') report.errors.push(messageOf(part.error));
    if (part.type === 'tool-call') report.toolCalls.push({ toolName: part.toolName, input: part.input });
  }
} catch (error) {
  report.errors.push(messageOf(error));
}
try {
  report.finishReason = await result.finishReason;
} catch (error) {
  report.finishReason = null;
  report.errors.push(messageOf(error));
}
process.stdout.write(JSON.stringify(report) + '\n');

import { randomBytes } from 'node:crypto';

/** A chat message as the reply function sees it: content flattened to text. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** An OpenAI error body: `{ error: { message, type, param, code } }`. */
export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** The error bodies OpenAI answers for the statuses a client must handle. */
export function openAiError(status: number, message?: string): OpenAiErrorBody {
  switch (status) {
    case 400:
      return { error: { message: message ?? 'Invalid request', type: 'invalid_request_error', param: null, code: null } };
    case 401:
      return {
        error: { message: message ?? 'Incorrect API key provided.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' },
      };
    case 429:
      return {
        error: { message: message ?? 'Rate limit reached for requests', type: 'requests', param: null, code: 'rate_limit_exceeded' },
      };
    default:
      return {
        error: { message: message ?? 'The server had an error while processing your request.', type: 'server_error', param: null, code: null },
      };
  }
}

/**
 * `messages` narrowed to `{ role, content }[]`, or an error message. Content may be a string, null
 * (assistant tool calls) or an array of parts, whose `text` parts are joined.
 */
export function readMessages(value: unknown): ChatMessage[] | string {
  if (!Array.isArray(value) || value.length === 0) return "'messages' must be a non-empty array";
  const messages: ChatMessage[] = [];
  for (const [index, item] of (value as unknown[]).entries()) {
    if (typeof item !== 'object' || item === null) return `messages[${index}] must be an object`;
    const { role, content } = item as Record<string, unknown>;
    if (typeof role !== 'string') return `messages[${index}].role must be a string`;
    const text = flattenContent(content);
    if (text === undefined) return `messages[${index}].content must be a string or an array of parts`;
    messages.push({ role, content: text });
  }
  return messages;
}

function flattenContent(content: unknown): string | undefined {
  if (typeof content === 'string') return content;
  if (content === null) return '';
  if (!Array.isArray(content)) return undefined;
  return (content as unknown[])
    .map((part) => {
      const text = typeof part === 'object' && part !== null ? (part as Record<string, unknown>).text : undefined;
      return typeof text === 'string' ? text : '';
    })
    .join('');
}

/** The default reply: `Echo: <last user message>`. */
export function echoReply(messages: readonly ChatMessage[]): string {
  const lastUser = messages.findLast((message) => message.role === 'user');
  return `Echo: ${lastUser?.content ?? ''}`;
}

/** A rough token count (≈ 4 characters a token), enough for `usage` to look plausible. */
function countTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

export function completionId(): string {
  return `chatcmpl-${randomBytes(12).toString('base64url')}`;
}

export function chatCompletion(input: { id: string; created: number; model: string; messages: readonly ChatMessage[]; content: string }) {
  const promptTokens = input.messages.reduce((sum, message) => sum + countTokens(message.content) + 4, 0);
  const completionTokens = countTokens(input.content);
  return {
    id: input.id,
    object: 'chat.completion',
    created: input.created,
    model: input.model,
    choices: [{ index: 0, message: { role: 'assistant', content: input.content }, finish_reason: 'stop', logprobs: null }],
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
  };
}

/** A `stream: true` answer as server-sent events: role, content, finish, then `[DONE]`. */
export function chatCompletionStream(input: { id: string; created: number; model: string; content: string }): string {
  const chunk = (delta: Record<string, string>, finishReason: string | null): string =>
    `data: ${JSON.stringify({
      id: input.id,
      object: 'chat.completion.chunk',
      created: input.created,
      model: input.model,
      choices: [{ index: 0, delta, finish_reason: finishReason }],
    })}\n\n`;
  return `${chunk({ role: 'assistant', content: '' }, null)}${chunk({ content: input.content }, null)}${chunk({}, 'stop')}data: [DONE]\n\n`;
}

import { WorkerError } from '../errors.js';
import { requestJson, HttpFailure, type HttpTransport } from '../http.js';

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/** An LLM call that failed (`WX_ERR_LLM`); `transient` ones are worth retrying (network, timeout, 429, 5xx). */
export class LlmError extends WorkerError {
  override readonly name = 'LlmError';
  readonly transient: boolean;
  constructor(message: string, transient: boolean, options?: { cause?: unknown }) {
    super('WX_ERR_LLM', message, options);
    this.transient = transient;
  }
}

export interface LlmClient {
  /** The model's answer to `messages`. */
  complete(messages: readonly ChatMessage[], signal?: AbortSignal): Promise<string>;
}

export interface LlmClientDeps {
  /** OpenAI-compatible base, e.g. `https://api.openai.com/v1` (without `/chat/completions`). */
  readonly baseUrl: string;
  readonly apiKey?: string;
  readonly model: string;
  readonly timeoutMs: number;
  readonly transport: HttpTransport;
}

/** An OpenAI-compatible chat-completions client (`POST {baseUrl}/chat/completions`). */
export function createLlmClient(deps: LlmClientDeps): LlmClient {
  const url = `${deps.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  const headers = deps.apiKey === undefined ? undefined : { authorization: `Bearer ${deps.apiKey}` };
  return {
    async complete(messages, signal) {
      let answer: { status: number; json: unknown };
      try {
        answer = await requestJson(url, { model: deps.model, messages }, {
          transport: deps.transport,
          timeoutMs: deps.timeoutMs,
          ...(headers === undefined ? {} : { headers }),
          ...(signal === undefined ? {} : { signal }),
        });
      } catch (err) {
        if (err instanceof HttpFailure) throw new LlmError(`LLM: ${err.message}`, true, { cause: err });
        throw err;
      }
      if (answer.status < 200 || answer.status >= 300) {
        const transient = answer.status === 429 || answer.status === 408;
        throw new LlmError(`LLM: HTTP ${answer.status}`, transient);
      }
      const body = answer.json as { choices?: { message?: { content?: unknown } }[] } | undefined;
      const content = body?.choices?.[0]?.message?.content;
      if (typeof content !== 'string' || content.trim() === '') throw new LlmError('LLM: answer without choices[0].message.content', true);
      return content;
    },
  };
}

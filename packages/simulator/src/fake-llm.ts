import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import {
  chatCompletion,
  chatCompletionStream,
  completionId,
  echoReply,
  openAiError,
  readMessages,
  type ChatMessage,
} from './fake-llm/openai-shapes.js';
import { holdReply } from './hold-reply.js';

export type { ChatMessage } from './fake-llm/openai-shapes.js';

/** Produces the assistant's text from the conversation. */
export type FakeLlmReply = (messages: ChatMessage[], model: string) => string | Promise<string>;

export interface FakeLlmOptions {
  /** Default 0 (any free port). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Wait this long before each answer (a timer: other requests are not held up). Default 0. */
  delayMs?: number;
  /** Default: `Echo: <last user message>`. */
  reply?: FakeLlmReply;
  /** When set, requests must carry `Authorization: Bearer <apiKey>` (else 401). */
  apiKey?: string;
  /** Clock for `created` and `at`, ms; default `Date.now`. */
  now?: () => number;
}

/** A chat-completions request that passed auth and validation (injected failures included). */
export interface FakeLlmRequest {
  model: string;
  messages: ChatMessage[];
  at: number;
}

export interface FakeLlmInjection {
  /** HTTP status to answer, with OpenAI's error body for it (500, 502, 503, 429, …). */
  status: number;
  /** How many requests; default 1, `Infinity` ok. */
  times?: number;
  /** Sent as `retry-after` (seconds), as OpenAI does on 429. */
  retryAfterSeconds?: number;
}

/** A running OpenAI-compatible chat-completions server on loopback. */
export interface FakeLlm {
  /** Base URL including `/v1`, e.g. `http://127.0.0.1:PORT/v1`. */
  readonly url: string;
  close(): Promise<void>;
  readonly requests: readonly FakeLlmRequest[];
  setDelay(ms: number): void;
  setReply(reply: FakeLlmReply): void;
  /** Fail the next requests (FIFO across calls). */
  inject(injection: FakeLlmInjection): void;
  /** Forget requests and injections. */
  reset(): void;
}

/**
 * Starts a fake of OpenAI's `POST /v1/chat/completions` (also `/chat/completions`, and
 * `GET /v1/models`). Close does not wait for delayed requests: their connections are destroyed.
 */
export async function startFakeLlm(options: FakeLlmOptions = {}): Promise<FakeLlm> {
  const now = options.now ?? Date.now;
  let delayMs = options.delayMs ?? 0;
  let reply: FakeLlmReply = options.reply ?? echoReply;
  const requests: FakeLlmRequest[] = [];
  const injections: { status: number; left: number; retryAfterSeconds?: number }[] = [];
  const abort = new AbortController();

  const app = Fastify({ logger: false, forceCloseConnections: true });

  function authorized(request: FastifyRequest): boolean {
    return options.apiKey === undefined || request.headers.authorization === `Bearer ${options.apiKey}`;
  }

  async function complete(request: FastifyRequest, res: FastifyReply): Promise<FastifyReply> {
    if (!authorized(request)) return res.code(401).send(openAiError(401));
    const body = (typeof request.body === 'object' && request.body !== null ? request.body : {}) as Record<string, unknown>;
    if (typeof body.model !== 'string' || body.model === '') {
      return res.code(400).send(openAiError(400, 'you must provide a model parameter'));
    }
    const messages = readMessages(body.messages);
    if (typeof messages === 'string') return res.code(400).send(openAiError(400, messages));
    const { model } = body;
    requests.push({ model, messages, at: now() });

    if (delayMs > 0 && !(await holdReply(res, delayMs, abort.signal))) return res;
    const injected = injections[0];
    if (injected !== undefined) {
      injected.left -= 1;
      if (injected.left <= 0) injections.shift();
      if (injected.retryAfterSeconds !== undefined) void res.header('retry-after', String(injected.retryAfterSeconds));
      return res.code(injected.status).send(openAiError(injected.status));
    }

    const content = await reply(messages, model);
    const id = completionId();
    const created = Math.floor(now() / 1000);
    if (body.stream === true) {
      return res.type('text/event-stream').send(chatCompletionStream({ id, created, model, content }));
    }
    return res.send(chatCompletion({ id, created, model, messages, content }));
  }

  app.post('/v1/chat/completions', complete);
  app.post('/chat/completions', complete);
  app.get('/v1/models', (request, res) => {
    if (!authorized(request)) return res.code(401).send(openAiError(401));
    return res.send({ object: 'list', data: [{ id: 'fake-llm', object: 'model', created: 0, owned_by: 'wxrelay' }] });
  });
  // Malformed JSON gets OpenAI's shape too, not fastify's.
  app.setErrorHandler((error: { statusCode?: number; message: string }, _request, res) => {
    const status = error.statusCode !== undefined && error.statusCode < 500 ? error.statusCode : 500;
    return res.code(status).send(openAiError(status, error.message));
  });

  await app.listen({ port: options.port ?? 0, host: options.host ?? '127.0.0.1' });
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}/v1`,
    async close() {
      abort.abort();
      await app.close();
    },
    requests,
    setDelay(ms) {
      delayMs = ms;
    },
    setReply(fn) {
      reply = fn;
    },
    inject({ status, times = 1, retryAfterSeconds }) {
      if (!(times > 0)) throw new RangeError(`inject: times must be > 0, got ${times}`);
      injections.push({ status, left: times, retryAfterSeconds });
    },
    reset() {
      requests.length = 0;
      injections.length = 0;
    },
  };
}

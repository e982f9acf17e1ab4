import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import Fastify, { type FastifyReply } from 'fastify';

/** One request the stub received. */
export interface StubRequest {
  readonly query: Record<string, string>;
  readonly body: string;
  /** When it arrived (`performance.now()`, ms). */
  readonly receivedAt: number;
  /** When its connection closed (`performance.now()`, ms), once it has: the client cut it, or the stub closed. */
  connectionClosedAt?: number;
}

/**
 * How the stub answers one request: a status, body and headers, or `hang` (never answer: the
 * client must time out and drop the connection).
 */
export type StubAnswer = { status?: number; body: string; contentType?: string; headers?: Record<string, string> } | 'hang';

/** A tiny stand-in for a gateway: records requests, answers from a script (last answer repeats). */
export interface StubGateway {
  readonly url: string;
  readonly requests: StubRequest[];
  /** Answers for the next requests, in order; the last one repeats. */
  script(...answers: (StubAnswer | ((request: StubRequest) => StubAnswer | Promise<StubAnswer>))[]): void;
  close(): Promise<void>;
}

export async function startStubGateway(): Promise<StubGateway> {
  const app = Fastify({ logger: false, forceCloseConnections: true });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => done(null, body));
  const requests: StubRequest[] = [];
  let answers: (StubAnswer | ((request: StubRequest) => StubAnswer | Promise<StubAnswer>))[] = [{ body: 'success' }];

  app.post('/wx', async (request, reply) => {
    const received: StubRequest = {
      query: request.query as Record<string, string>,
      body: typeof request.body === 'string' ? request.body : '',
      receivedAt: performance.now(),
    };
    request.raw.socket.once('close', () => (received.connectionClosedAt = performance.now()));
    requests.push(received);
    const next = answers.length > 1 ? answers.shift()! : answers[0]!;
    const answer = typeof next === 'function' ? await next(received) : next;
    if (answer === 'hang') return new Promise<FastifyReply>(() => undefined);
    return reply
      .status(answer.status ?? 200)
      .headers(answer.headers ?? {})
      .type(answer.contentType ?? 'text/plain; charset=utf-8')
      .send(answer.body);
  });
  app.get('/wx', async (request, reply) => {
    const query = request.query as Record<string, string>;
    requests.push({ query, body: '', receivedAt: performance.now() });
    return reply.type('text/plain').send(query.echostr ?? '');
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/wx`,
    requests,
    script(...next) {
      answers = next;
    },
    async close() {
      await app.close();
    },
  };
}

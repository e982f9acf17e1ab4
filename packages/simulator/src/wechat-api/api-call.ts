import type { FastifyReply } from 'fastify';
import { holdReply } from '../hold-reply.js';
import type { FakeWechatContext } from './context.js';
import { errorBody } from './errors.js';
import type { WechatApiPath } from './injections.js';

/** What a route's work produced: an errcode (0 = success) and, on success, the body to send. */
export interface ApiAnswer {
  errcode: number;
  body?: Record<string, unknown>;
}

const GATEWAY_PAGE = '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>';

/**
 * Runs one API call the way every WeChat endpoint answers: HTTP 200 with JSON, errors as
 * `{ errcode, errmsg }`. Applies the next injected fault for `path` first, and records the call.
 */
export async function answerApiCall(
  context: FakeWechatContext,
  path: WechatApiPath,
  reply: FastifyReply,
  work: () => ApiAnswer | Promise<ApiAnswer>,
): Promise<FastifyReply> {
  const injection = context.injections.take(path);
  if (injection?.delayMs !== undefined && injection.delayMs > 0) {
    if (!(await holdReply(reply, injection.delayMs, context.signal))) return reply;
  }
  const faulty = injection !== undefined && (injection.errcode !== undefined || injection.httpStatus !== undefined);
  const real = !faulty || injection.applyAnyway === true ? await work() : undefined;

  let answer: ApiAnswer;
  let httpStatus = 200;
  let html = false;
  if (faulty && (real === undefined || real.errcode === 0)) {
    answer = { errcode: injection.errcode ?? -1 };
    httpStatus = injection.httpStatus ?? 200;
    html = injection.errcode === undefined;
  } else {
    answer = real ?? { errcode: -1 };
  }

  const at = context.now();
  const call = { path, errcode: answer.errcode, httpStatus, at };
  context.records.calls.push(call);
  context.events.emit('call', call);

  if (html) return reply.code(httpStatus).type('text/html').send(GATEWAY_PAGE);
  const body = answer.errcode === 0 ? (answer.body ?? errorBody(0, at)) : errorBody(answer.errcode, at);
  return reply.code(httpStatus).type('application/json; charset=utf-8').send(body);
}

/** The `access_token` query parameter's verdict: 0, 41001 (missing), 40001 or 42001. */
export function checkAccessToken(context: FakeWechatContext, query: unknown): 0 | 40001 | 41001 | 42001 {
  const token = queryParam(query, 'access_token');
  if (token === undefined || token === '') return 41001;
  return context.tokens.check(token);
}

/** A single query parameter, or undefined when absent or repeated. */
export function queryParam(query: unknown, name: string): string | undefined {
  if (typeof query !== 'object' || query === null) return undefined;
  const value = (query as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

import fp from 'fastify-plugin';
import type { onResponseHookHandler } from 'fastify';
import type { WechatTimeoutReason } from '../metrics.js';

/** WeChat waits this long for an answer, then gives up on the push (and retries it, up to 3 times). */
export const WECHAT_ANSWER_BUDGET_MS = 5_000;

export interface WechatTimeoutsOptions {
  /** The callback path (its POST route is the one counted). */
  readonly path: string;
}

/**
 * Counts `wxrelay_gateway_wechat_timeouts_total{reason}`: the callbacks WeChat's own
 * 「开发者5秒内没有返回」 alarm counts. `slow`: the answer left more than 5 s after the request
 * arrived (WeChat had already given up, whatever the status); `5xx`: answered in time, with a 5xx.
 * An `onResponse` hook on the callback's POST route only (added as the route is declared), so the
 * route itself knows nothing of it.
 */
export const wechatTimeoutsPlugin = fp<WechatTimeoutsOptions>(
  (app, opts, done) => {
    const counter = app.metrics.wechatTimeouts;
    const hook: onResponseHookHandler = (_req, reply, next) => {
      try {
        const reason = timeoutReason(reply.elapsedTime, reply.statusCode);
        if (reason !== undefined) counter.inc({ reason });
      } catch {
        // A metric never fails a request.
      }
      next();
    };
    app.addHook('onRoute', (route) => {
      if (route.url !== opts.path || !methodsOf(route.method).includes('POST')) return;
      route.onResponse = [...asArray(route.onResponse), hook];
    });
    done();
  },
  { name: 'wxrelay-wechat-timeouts', fastify: '5.x' },
);

/** Why WeChat counts an answer as failed, if it does: late first (WeChat never saw it), then 5xx. */
export function timeoutReason(elapsedMs: number, status: number): WechatTimeoutReason | undefined {
  if (elapsedMs > WECHAT_ANSWER_BUDGET_MS) return 'slow';
  if (status >= 500) return '5xx';
  return undefined;
}

export function methodsOf(method: string | readonly string[]): readonly string[] {
  return typeof method === 'string' ? [method] : method;
}

export function asArray<T>(value: T | readonly T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? [...(value as readonly T[])] : [value as T];
}

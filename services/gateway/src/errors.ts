import type { FastifyError, FastifyInstance } from 'fastify';
import { isWxError, type WxErrorCode } from '@wxrelay/shared/protocol';

/**
 * The one table from error code to HTTP status. Nothing here ever answers `success`: every
 * refusal is a 4xx (WeChat gives up on it, an attacker learns nothing), and a Redis failure is a
 * 503 so that WeChat retries and nothing is lost.
 */
export const STATUS_BY_CODE: Readonly<Record<WxErrorCode, number>> = {
  WX_ERR_SIGNATURE: 403,
  WX_ERR_TIMESTAMP: 403,
  WX_ERR_PLAIN_REFUSED: 403,
  WX_ERR_DECRYPT: 400,
  WX_ERR_AES_KEY: 400,
  WX_ERR_XML: 400,
  WX_ERR_PARAM: 400,
  WX_ERR_ENQUEUE: 503,
  WX_ERR_CONFIG: 500,
  WX_ERR_API: 502,
  WX_ERR_NETWORK: 502,
};

/** Answers every error with a short plain-text reason and logs one line. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    let status: number;
    let reason: string;
    let code: string;
    if (isWxError(err)) {
      status = STATUS_BY_CODE[err.code];
      reason = err.message;
      code = err.code;
    } else if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      // fastify's own refusals: schema validation (400), body too large (413), bad media type…
      status = err.statusCode;
      reason = err.validation !== undefined ? `bad query: ${err.message}` : err.message;
      code = err.code ?? 'FST_ERR';
    } else {
      status = 500;
      reason = 'internal error';
      code = 'INTERNAL';
    }
    const entry = { code, status, method: req.method, path: req.routeOptions.url ?? req.url.split('?')[0], reason };
    if (status >= 500) req.log.error({ ...entry, err }, 'request failed');
    else req.log.warn(entry, 'request refused');
    return reply.code(status).type('text/plain; charset=utf-8').send(`${status === 503 ? 'unavailable' : 'refused'}: ${reason}`);
  });
}

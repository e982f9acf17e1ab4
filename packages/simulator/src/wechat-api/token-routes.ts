import type { FastifyPluginCallback } from 'fastify';
import { answerApiCall, queryParam, type ApiAnswer } from './api-call.js';
import type { FakeWechatContext } from './context.js';
import { readJsonBody } from './json-body.js';
import type { IssuedToken } from './token-store.js';

/**
 * Credential checks shared by both token endpoints. A wrong secret answers 40125 here; the real
 * API has also been seen answering 40001 for it (docs/wechat-protocol.md §8.3), which this fake does not imitate.
 */
function checkCredentials(context: FakeWechatContext, grantType: unknown, appId: unknown, secret: unknown): number {
  if (grantType !== 'client_credential') return 40002;
  if (typeof appId !== 'string' || appId === '') return 41002;
  if (appId !== context.appId) return 40013;
  if (typeof secret !== 'string' || secret === '') return 41004;
  if (secret !== context.appSecret) return 40125;
  return 0;
}

function tokenAnswer(issued: IssuedToken): ApiAnswer {
  return { errcode: 0, body: { access_token: issued.accessToken, expires_in: issued.expiresIn } };
}

/** `GET /cgi-bin/token` (docs/wechat-protocol.md §8.1) and `POST /cgi-bin/stable_token` (§8.2). */
export const tokenRoutes: FastifyPluginCallback<{ context: FakeWechatContext }> = (app, { context }, done) => {
  app.get('/cgi-bin/token', (request, reply) => {
    context.records.tokenFetches.push({ endpoint: 'token', forceRefresh: false, at: context.now() });
    return answerApiCall(context, '/cgi-bin/token', reply, () => {
      const q = request.query;
      const errcode = checkCredentials(context, queryParam(q, 'grant_type'), queryParam(q, 'appid'), queryParam(q, 'secret'));
      return errcode === 0 ? tokenAnswer(context.tokens.issueToken()) : { errcode };
    });
  });

  app.post('/cgi-bin/stable_token', (request, reply) => {
    const parsed = readJsonBody(request.body as Buffer | undefined, { rejectUnicodeEscapes: false });
    const forceRefresh = parsed.ok && parsed.value.force_refresh === true;
    context.records.tokenFetches.push({ endpoint: 'stable_token', forceRefresh, at: context.now() });
    return answerApiCall(context, '/cgi-bin/stable_token', reply, () => {
      if (!parsed.ok) return { errcode: parsed.errcode };
      const { grant_type: grantType, appid, secret, force_refresh: force } = parsed.value;
      if (force !== undefined && typeof force !== 'boolean') return { errcode: 47001 };
      const errcode = checkCredentials(context, grantType, appid, secret);
      if (errcode !== 0) return { errcode };
      const issued = context.tokens.issueStableToken(forceRefresh);
      return 'errcode' in issued ? { errcode: issued.errcode } : tokenAnswer(issued);
    });
  });

  app.get('/cgi-bin/stable_token', (_request, reply) =>
    answerApiCall(context, '/cgi-bin/stable_token', reply, () => ({ errcode: 43002 })),
  );
  done();
};

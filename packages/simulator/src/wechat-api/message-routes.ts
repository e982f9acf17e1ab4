import type { FastifyPluginCallback } from 'fastify';
import { answerApiCall, checkAccessToken, type ApiAnswer } from './api-call.js';
import type { Delivery, FakeWechatContext, TypingRecord, UnauthorizedCall } from './context.js';
import { checkCustomMessage } from './custom-message.js';
import { readJsonBody } from './json-body.js';

/** docs/wechat-protocol.md §9.2: typing needs an exchange within the last 30 s and lasts 15 s. */
const TYPING_EXCHANGE_MS = 30_000;
const TYPING_STATE_MS = 15_000;

/**
 * An unverified account's customer-service call: refused with 48001 once the token is good, before
 * anything else is looked at (the body is read only to tell who it was for). Recorded and emitted.
 */
function refuseUnverified(context: FakeWechatContext, path: UnauthorizedCall['path'], rawBody: Buffer | undefined, whatField: string): ApiAnswer {
  const parsed = readJsonBody(rawBody, { rejectUnicodeEscapes: false });
  const { touser, [whatField]: what } = parsed.ok ? parsed.value : {};
  const call: UnauthorizedCall = {
    path,
    ...(typeof touser === 'string' && touser !== '' ? { touser } : {}),
    ...(typeof what === 'string' && what !== '' ? { what } : {}),
    at: context.now(),
  };
  context.records.unauthorized.push(call);
  context.events.emit('unauthorized', call);
  return { errcode: 48001 };
}

function send(context: FakeWechatContext, query: unknown, rawBody: Buffer | undefined): ApiAnswer {
  const tokenCode = checkAccessToken(context, query);
  if (tokenCode !== 0) return { errcode: tokenCode };
  if (context.unverified) return refuseUnverified(context, '/cgi-bin/message/custom/send', rawBody, 'msgtype');
  const parsed = readJsonBody(rawBody, { rejectUnicodeEscapes: true });
  if (!parsed.ok) return { errcode: parsed.errcode };
  const checked = checkCustomMessage(parsed.value, { maxTextBytes: context.maxTextBytes });
  if (!checked.ok) return { errcode: checked.errcode };
  const at = context.now();
  if (context.enforceWindow) {
    const windowCode = context.windows.consume(checked.touser, at);
    if (windowCode !== 0) return { errcode: windowCode };
  }
  // Sending a message ends the typing state (docs/wechat-protocol.md §9.2).
  context.typingUntil.delete(checked.touser);
  const delivery: Delivery = { touser: checked.touser, msgtype: checked.msgtype, body: parsed.value, at };
  context.records.deliveries.push(delivery);
  context.events.emit('delivery', delivery);
  return { errcode: 0 };
}

function typing(context: FakeWechatContext, query: unknown, rawBody: Buffer | undefined): ApiAnswer {
  const tokenCode = checkAccessToken(context, query);
  if (tokenCode !== 0) return { errcode: tokenCode };
  if (context.unverified) return refuseUnverified(context, '/cgi-bin/message/custom/typing', rawBody, 'command');
  const parsed = readJsonBody(rawBody, { rejectUnicodeEscapes: true });
  if (!parsed.ok) return { errcode: parsed.errcode };
  const { touser, command } = parsed.value;
  if (typeof touser !== 'string' || touser === '') return { errcode: 40003 };
  if (command !== 'Typing' && command !== 'CancelTyping') return { errcode: 45072 };
  const at = context.now();
  if (context.strictTyping) {
    const window = context.windows.get(touser);
    if (context.enforceWindow && (window === undefined || at >= window.expiresAt)) return { errcode: 45015 };
    if (window === undefined || at - window.lastExchangeAt > TYPING_EXCHANGE_MS) return { errcode: 45080 };
    if (command === 'Typing' && at < (context.typingUntil.get(touser) ?? 0)) return { errcode: 45081 };
    if (command === 'Typing') context.typingUntil.set(touser, at + TYPING_STATE_MS);
    else context.typingUntil.delete(touser);
  }
  const record: TypingRecord = { touser, command, at };
  context.records.typing.push(record);
  context.events.emit('typing', record);
  return { errcode: 0 };
}

/** `POST /cgi-bin/message/custom/send` (docs/wechat-protocol.md §9.1) and `POST /cgi-bin/message/custom/typing` (§9.2). */
export const messageRoutes: FastifyPluginCallback<{ context: FakeWechatContext }> = (app, { context }, done) => {
  app.post('/cgi-bin/message/custom/send', (request, reply) =>
    answerApiCall(context, '/cgi-bin/message/custom/send', reply, () =>
      send(context, request.query, request.body as Buffer | undefined),
    ),
  );
  app.post('/cgi-bin/message/custom/typing', (request, reply) =>
    answerApiCall(context, '/cgi-bin/message/custom/typing', reply, () =>
      typing(context, request.query, request.body as Buffer | undefined),
    ),
  );
  for (const path of ['/cgi-bin/message/custom/send', '/cgi-bin/message/custom/typing'] as const) {
    app.get(path, (_request, reply) => answerApiCall(context, path, reply, () => ({ errcode: 43002 })));
  }
  done();
};

import {
  buildEncryptedReply,
  buildReplyXml,
  decryptMessage,
  deriveAesKey,
  parseInboundMessage,
  parseXml,
  verifyMsgSignature,
  verifySignature,
} from '@wxrelay/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sendCallback, WECHAT_TIMEOUT_MS, type CallbackAttempt, type SendCallbackOptions } from './callback-client.js';
import { createInboundXmlBuilder } from './inbound-xml.js';
import { startStubGateway, type StubGateway, type StubRequest } from './test-support/stub-gateway.js';
import { verifyCallbackUrl } from './url-verification.js';

const TOKEN = 'wxrelaytoken';
const APP_ID = 'wx5823bf96d3bd56c7';
const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const KEY = deriveAesKey(AES_KEY);
const ACCOUNT = 'gh_7f083739789a';
const OPENID = 'oia2TjuEGTNoeX76QEjQNrcURxG8';
/** Short per-try timeout for the tests that make the stub hang (the default is WeChat's 5 s). */
const SHORT_TIMEOUT_MS = 300;
/**
 * Timers may fire up to a millisecond before the instant measured with `performance.now()`, and
 * start times are rounded to whole ms: the slack allowed below a timeout in "at least" checks.
 */
const TIMER_SLACK_MS = 3;

let gateway: StubGateway;
const builder = createInboundXmlBuilder({ account: ACCOUNT });

beforeEach(async () => {
  gateway = await startStubGateway();
});
afterEach(async () => {
  await gateway.close();
});

function options(overrides: Partial<SendCallbackOptions> = {}): SendCallbackOptions {
  return {
    gatewayUrl: gateway.url,
    token: TOKEN,
    appId: APP_ID,
    encodingAesKey: AES_KEY,
    mode: 'plain',
    xml: builder.build(OPENID, { type: 'text', content: '你好' }).xml,
    ...overrides,
  };
}

function textReply(content: string, to = OPENID): string {
  return buildReplyXml({ kind: 'text', content }, { toUserName: to, fromUserName: ACCOUNT, createTime: 1700000000 });
}

function encryptedReply(replyXml: string, token = TOKEN): string {
  return buildEncryptedReply({ token, key: KEY, appId: APP_ID, replyXml, timestamp: '1700000000', nonce: '12345' });
}

describe('sendCallback: signing and envelopes', () => {
  it('plain mode: signs the query as WeChat does and sends the XML as is', async () => {
    const xml = options().xml;
    const result = await sendCallback(options({ xml }));
    expect(result).toMatchObject({ outcome: 'ack', tries: 1, status: 200, body: 'success' });
    const [request] = gateway.requests;
    const { signature, timestamp, nonce, openid } = request!.query;
    expect(verifySignature(TOKEN, timestamp!, nonce!, signature!)).toBe(true);
    expect(openid).toBe(OPENID);
    expect(request!.query).not.toHaveProperty('encrypt_type');
    expect(request!.query).not.toHaveProperty('msg_signature');
    expect(request!.body).toBe(xml);
  });

  it('safe mode: ToUserName + Encrypt only, msg_signature over Encrypt, plaintext inside', async () => {
    const xml = options().xml;
    await sendCallback(options({ mode: 'safe', xml }));
    const [request] = gateway.requests;
    const { signature, timestamp, nonce, msg_signature: msgSignature, encrypt_type: encryptType, openid } = request!.query;
    expect(encryptType).toBe('aes');
    expect(openid).toBe(OPENID);
    expect(verifySignature(TOKEN, timestamp!, nonce!, signature!)).toBe(true);
    const fields = parseXml(request!.body);
    expect(Object.keys(fields).sort()).toEqual(['Encrypt', 'ToUserName']);
    expect(fields['ToUserName']).toBe(ACCOUNT);
    const encrypt = fields['Encrypt'] as string;
    expect(verifyMsgSignature(TOKEN, timestamp!, nonce!, encrypt, msgSignature!)).toBe(true);
    expect(decryptMessage(KEY, encrypt, APP_ID).message).toBe(xml);
  });

  it('compatible mode: the plaintext fields and Encrypt side by side', async () => {
    const xml = options().xml;
    await sendCallback(options({ mode: 'compat', xml }));
    const [request] = gateway.requests;
    const fields = parseXml(request!.body);
    expect(fields).toMatchObject({ MsgType: 'text', Content: '你好', FromUserName: OPENID });
    const { timestamp, nonce, msg_signature: msgSignature } = request!.query;
    expect(verifyMsgSignature(TOKEN, timestamp!, nonce!, fields['Encrypt'] as string, msgSignature!)).toBe(true);
    expect(decryptMessage(KEY, fields['Encrypt'] as string, APP_ID).message).toBe(xml);
    expect(parseInboundMessage(request!.body)).toMatchObject({ kind: 'text', content: '你好' });
  });

  it('refuses compatible/safe mode without an EncodingAESKey', async () => {
    await expect(sendCallback(options({ mode: 'safe', encodingAesKey: undefined }))).rejects.toThrow(/encodingAesKey/);
    expect(gateway.requests).toHaveLength(0);
  });
});

describe('sendCallback: what counts as an answer', () => {
  it('an empty body is an ack', async () => {
    gateway.script({ body: '' });
    expect(await sendCallback(options())).toMatchObject({ outcome: 'ack', tries: 1, body: '' });
  });

  it('a plain passive reply in plain mode is parsed', async () => {
    gateway.script({ body: textReply('第一行\n第二行'), contentType: 'text/xml' });
    const result = await sendCallback(options());
    expect(result.outcome).toBe('reply');
    expect(result.reply).toMatchObject({ toUserName: OPENID, fromUserName: ACCOUNT, reply: { kind: 'text', content: '第一行\n第二行' } });
    // A gateway that says nothing about its reply: which try got it, but no label.
    expect(result.replyAttempt).toBe(1);
    expect(result).not.toHaveProperty('replyKind');
    expect(result).not.toHaveProperty('gatewayAttempt');
    expect(result.attempts).toMatchObject([{ attempt: 1, startedMs: 0, ended: 'reply', status: 200 }]);
    expect(result.attempts[0]).not.toHaveProperty('wxrelayHeaders');
  });

  it("reads wxrelay's labels of a passive reply: x-wxrelay-reply and x-wxrelay-attempt", async () => {
    gateway.script({ body: textReply('答案'), headers: { 'x-wxrelay-reply': 'answer', 'x-wxrelay-attempt': '1', 'x-other': 'no' } });
    const result = await sendCallback(options());
    expect(result).toMatchObject({ outcome: 'reply', replyAttempt: 1, replyKind: 'answer', gatewayAttempt: 1 });
    expect(result.attempts[0]!.wxrelayHeaders).toEqual({ 'x-wxrelay-reply': 'answer', 'x-wxrelay-attempt': '1' });
  });

  it('ignores a label it does not know, and labels on an ack', async () => {
    gateway.script({ body: textReply('x'), headers: { 'x-wxrelay-reply': 'maybe', 'x-wxrelay-attempt': 'two' } }, { body: 'success', headers: { 'x-wxrelay-reply': 'answer' } });
    const reply = await sendCallback(options());
    expect(reply.outcome).toBe('reply');
    expect(reply).not.toHaveProperty('replyKind');
    expect(reply).not.toHaveProperty('gatewayAttempt');
    expect(reply.attempts[0]!.wxrelayHeaders).toEqual({ 'x-wxrelay-reply': 'maybe', 'x-wxrelay-attempt': 'two' });
    const ack = await sendCallback(options());
    expect(ack.outcome).toBe('ack');
    expect(ack).not.toHaveProperty('replyKind');
    expect(ack).not.toHaveProperty('replyAttempt');
  });

  it('an encrypted passive reply in safe mode is verified and decrypted', async () => {
    gateway.script({ body: encryptedReply(textReply('加密的')) });
    const result = await sendCallback(options({ mode: 'safe' }));
    expect(result).toMatchObject({ outcome: 'reply', tries: 1, reply: { reply: { kind: 'text', content: '加密的' } } });
  });

  it('compatible mode accepts a plain or an encrypted reply', async () => {
    gateway.script({ body: textReply('plain') }, { body: encryptedReply(textReply('sealed')) });
    expect((await sendCallback(options({ mode: 'compat' }))).reply?.reply).toEqual({ kind: 'text', content: 'plain' });
    expect((await sendCallback(options({ mode: 'compat' }))).reply?.reply).toEqual({ kind: 'text', content: 'sealed' });
  });

  it.each([
    ['a plaintext reply to a safe-mode push', 'safe', (): string => textReply('x'), /plaintext reply to a safe-mode push/],
    ['an encrypted reply to a plain-mode push', 'plain', (): string => encryptedReply(textReply('x')), /encrypted reply to a plain-mode push/],
    ['an envelope signed with another token', 'safe', (): string => encryptedReply(textReply('x'), 'othertoken'), /WX_ERR_SIGNATURE/],
    ['JSON', 'plain', (): string => '{"ok":true}', /WX_ERR_XML/],
    ['a reply addressed to another user', 'plain', (): string => textReply('x', 'oSomeoneElse'), /ToUserName/],
    ['"success " with a trailing space', 'plain', (): string => 'success ', /WX_ERR_XML/],
  ] as const)('%s is invalid: retried, then failed', async (_title, mode, body, error) => {
    gateway.script({ body: body() });
    const result = await sendCallback(options({ mode }));
    expect(result.outcome).toBe('failed');
    expect(result.tries).toBe(3);
    expect(result.status).toBe(200);
    expect(result.error).toMatch(error);
    expect(result.attempts.map((a) => a.ended)).toEqual(['invalid', 'invalid', 'invalid']);
    expect(gateway.requests).toHaveLength(3);
  });
});

describe("sendCallback: WeChat's timing", () => {
  it('retries a push with no answer within the timeout, with the identical request', async () => {
    gateway.script('hang', 'hang', { body: 'success' });
    const result = await sendCallback(options({ timeoutMs: SHORT_TIMEOUT_MS }));
    expect(result).toMatchObject({ outcome: 'ack', tries: 3, status: 200 });
    expect(result.attempts.map((a) => a.error)).toEqual([
      `no answer within ${SHORT_TIMEOUT_MS} ms`,
      `no answer within ${SHORT_TIMEOUT_MS} ms`,
      undefined,
    ]);
    expect(result.attempts.map((a) => a.ended)).toEqual(['cut', 'cut', 'ack']);
    expect(result.attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(gateway.requests).toHaveLength(3);
    const [first, ...retries] = gateway.requests;
    const msgId = (parseInboundMessage(first!.body) as { msgId: string }).msgId;
    expect(msgId).toMatch(/^\d{17,}$/);
    for (const retry of retries) {
      expect(retry.body).toBe(first!.body);
      expect(retry.query).toEqual(first!.query);
    }
  });

  it('a gateway answering only the 2nd try: the 1st is cut at the timeout, its connection closed, the 2nd sent at once', async () => {
    gateway.script('hang', { body: textReply('第二次'), headers: { 'x-wxrelay-reply': 'answer', 'x-wxrelay-attempt': '2' } });
    const result = await sendCallback(options({ timeoutMs: SHORT_TIMEOUT_MS }));
    expect(result).toMatchObject({ outcome: 'reply', tries: 2, replyAttempt: 2, replyKind: 'answer', gatewayAttempt: 2 });
    expect(result.reply?.reply).toEqual({ kind: 'text', content: '第二次' });
    const [first, second] = result.attempts as [CallbackAttempt, CallbackAttempt];
    expect(first).toMatchObject({ attempt: 1, startedMs: 0, ended: 'cut' });
    expect(first).not.toHaveProperty('status');
    expect(first.durationMs).toBeGreaterThanOrEqual(SHORT_TIMEOUT_MS - TIMER_SLACK_MS);
    expect(second).toMatchObject({ attempt: 2, ended: 'reply', status: 200 });
    expect(second.startedMs).toBeGreaterThanOrEqual(SHORT_TIMEOUT_MS - TIMER_SLACK_MS);
    // Sent once the first was cut (how soon after is the machine's business: no upper bound here).
    expect(second.startedMs).toBeGreaterThanOrEqual(first.startedMs + first.durationMs);

    // What the gateway saw: WeChat closed the first connection at the cut, then came again.
    const [held, retry] = gateway.requests as [StubRequest, StubRequest];
    expect(gateway.requests).toHaveLength(2);
    expect(held.connectionClosedAt).toBeDefined();
    // The server's clock starts when its handler runs, which a loaded machine delays: only the order
    // is certain there (the client's timings above are the platform's).
    expect(retry.receivedAt).toBeGreaterThanOrEqual(held.receivedAt);
  });

  it('a placeholder on the last try is labelled as one', async () => {
    gateway.script('hang', 'hang', { body: textReply('正在思考中，回复任意文字获取回答'), headers: { 'x-wxrelay-reply': 'placeholder', 'x-wxrelay-attempt': '3' } });
    const result = await sendCallback(options({ timeoutMs: SHORT_TIMEOUT_MS }));
    expect(result).toMatchObject({ outcome: 'reply', tries: 3, replyAttempt: 3, replyKind: 'placeholder', gatewayAttempt: 3 });
    expect(result.attempts.map((a) => a.ended)).toEqual(['cut', 'cut', 'reply']);
    expect(result.attempts[2]!.startedMs).toBeGreaterThanOrEqual(2 * SHORT_TIMEOUT_MS - 2 * TIMER_SLACK_MS);
  });

  it("WeChat's own timing (no timeoutMs): tries at 0, ≥ 5 s and ≥ 10 s, each cut after 5 s", async () => {
    gateway.script('hang', 'hang', { body: textReply('终于'), headers: { 'x-wxrelay-reply': 'answer', 'x-wxrelay-attempt': '3' } });
    const result = await sendCallback(options());
    expect(result).toMatchObject({ outcome: 'reply', tries: 3, replyAttempt: 3, replyKind: 'answer' });
    const [first, second, third] = result.attempts as [CallbackAttempt, CallbackAttempt, CallbackAttempt];
    expect([first.ended, second.ended, third.ended]).toEqual(['cut', 'cut', 'reply']);
    expect(first.error).toBe(`no answer within ${WECHAT_TIMEOUT_MS} ms`);
    expect(first.durationMs).toBeGreaterThanOrEqual(WECHAT_TIMEOUT_MS - TIMER_SLACK_MS);
    expect(second.durationMs).toBeGreaterThanOrEqual(WECHAT_TIMEOUT_MS - TIMER_SLACK_MS);
    expect(second.startedMs).toBeGreaterThanOrEqual(WECHAT_TIMEOUT_MS - TIMER_SLACK_MS);
    expect(third.startedMs).toBeGreaterThanOrEqual(2 * WECHAT_TIMEOUT_MS - 2 * TIMER_SLACK_MS);
    const [held1, held2, answered] = gateway.requests as [StubRequest, StubRequest, StubRequest];
    expect(held2.receivedAt).toBeGreaterThanOrEqual(held1.receivedAt);
    expect(answered.receivedAt).toBeGreaterThanOrEqual(held2.receivedAt);
    expect(held1.connectionClosedAt).toBeDefined();
    expect(held2.connectionClosedAt).toBeDefined();
  }, 20_000);

  it('tells each try as it ends, before the next is sent', async () => {
    gateway.script({ status: 503, body: 'busy' }, 'hang', { body: 'success' });
    const seen: { attempt: CallbackAttempt; requestsSoFar: number }[] = [];
    const result = await sendCallback(options({ timeoutMs: SHORT_TIMEOUT_MS, onAttempt: (attempt) => seen.push({ attempt, requestsSoFar: gateway.requests.length }) }));
    expect(seen.map((s) => s.attempt)).toEqual(result.attempts);
    expect(seen.map((s) => s.requestsSoFar)).toEqual([1, 2, 3]);
    expect(result.attempts.map((a) => a.ended)).toEqual(['status', 'cut', 'ack']);
  });

  it('retries a safe-mode push with the same ciphertext', async () => {
    gateway.script({ status: 503, body: 'busy' }, { body: 'success' });
    const result = await sendCallback(options({ mode: 'safe' }));
    expect(result).toMatchObject({ outcome: 'ack', tries: 2 });
    expect(gateway.requests[1]!.body).toBe(gateway.requests[0]!.body);
  });

  it('gives up after three tries (non-200 every time) and reports the last answer', async () => {
    gateway.script({ status: 500, body: 'oops' });
    const result = await sendCallback(options());
    expect(result).toMatchObject({ outcome: 'failed', tries: 3, status: 500, body: 'oops', error: 'HTTP 500' });
    expect(result.attempts.map((a) => a.ended)).toEqual(['status', 'status', 'status']);
    expect(gateway.requests).toHaveLength(3);
  });

  it('gives up after three timeouts without any status', async () => {
    gateway.script('hang');
    const result = await sendCallback(options({ timeoutMs: SHORT_TIMEOUT_MS }));
    expect(result.outcome).toBe('failed');
    expect(result.tries).toBe(3);
    expect(result.status).toBeUndefined();
    expect(result.error).toMatch(/no answer within/);
    expect(gateway.requests).toHaveLength(3);
  });

  it('makes as many tries as asked (the 1 + 3 reading of the doc)', async () => {
    gateway.script({ status: 502, body: '' });
    const result = await sendCallback(options({ maxTries: 4 }));
    expect(result.tries).toBe(4);
    expect(gateway.requests).toHaveLength(4);
  });

  it('reports a gateway that is not listening as a network failure', async () => {
    const url = gateway.url;
    await gateway.close();
    const result = await sendCallback(options({ gatewayUrl: url }));
    expect(result.outcome).toBe('failed');
    expect(result.status).toBeUndefined();
    expect(result.error).toMatch(/network error/);
    expect(result.attempts.map((a) => a.ended)).toEqual(['network', 'network', 'network']);
    gateway = await startStubGateway();
  });

  it('stops when its signal aborts', async () => {
    gateway.script('hang');
    const controller = new AbortController();
    const pending = sendCallback(options({ signal: controller.signal }));
    const deadline = Date.now() + 10_000;
    while (gateway.requests.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    controller.abort();
    await expect(pending).rejects.toThrow();
    expect(gateway.requests).toHaveLength(1);
  });
});

describe('verifyCallbackUrl', () => {
  it('sends a signed GET with an echostr and checks the echo', async () => {
    const result = await verifyCallbackUrl({ gatewayUrl: gateway.url, token: TOKEN });
    expect(result.ok).toBe(true);
    const [request] = gateway.requests;
    const { signature, timestamp, nonce, echostr } = request!.query;
    expect(verifySignature(TOKEN, timestamp!, nonce!, signature!)).toBe(true);
    expect(echostr).toBe(result.echostr);
  });
});

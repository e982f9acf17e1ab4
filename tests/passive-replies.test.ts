/**
 * REPLY_MODE=passive end to end, in WeChat's real time: a private Redis, a built gateway and worker
 * (real processes), the LLM and WeChat's API faked by the simulator, callbacks sent as WeChat sends
 * them (three attempts, 5 s each). The account is unverified: every customer-service send would
 * be answered 48001, and none may be made.
 */
import { createDecipheriv, createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { utf8Bytes } from '../services/worker/src/delivery/chunk-text.js';
import { AES_KEY, APP, TOKEN, longAnswer, scrape, startReplyStack, type ReplyStack } from './support/reply-stack.js';

const MARKER = '（回复任意文字继续）';
const PLACEHOLDER = '正在思考中，回复任意文字获取回答';

let stack: ReplyStack;

beforeAll(async () => {
  stack = await startReplyStack({ mode: 'passive', unverified: true });
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

function textOf(result: Awaited<ReturnType<ReplyStack['send']>>): string | undefined {
  const r = result.reply?.reply;
  return r?.kind === 'text' ? r.content : undefined;
}

describe('REPLY_MODE=passive: answers go back in WeChat\'s own requests', () => {
  it.concurrent('an LLM taking 1 s is answered on the first request', async () => {
    const r = await stack.send('p-one', { type: 'text', content: 'wait 1000 hello' });
    expect(r.outcome).toBe('reply');
    expect(r.tries).toBe(1);
    expect(textOf(r)).toBe('答：wait 1000 hello');
    expect(r.headers[0]?.['x-wxrelay-reply']).toBe('answer');
  }, 30_000);

  it.concurrent('7 s → on the second request (the first lapses unanswered)', async () => {
    const r = await stack.send('p-seven', { type: 'text', content: 'wait 7000 second' });
    expect(r.outcome).toBe('reply');
    expect(r.tries).toBe(2);
    expect(r.attempts[0]?.error).toMatch(/no answer within/);
    expect(textOf(r)).toBe('答：wait 7000 second');
    expect(r.headers.at(-1)?.['x-wxrelay-attempt']).toBe('2');
  }, 30_000);

  it.concurrent('12 s → on the third request', async () => {
    const r = await stack.send('p-twelve', { type: 'text', content: 'wait 12000 third' });
    expect(r.outcome).toBe('reply');
    expect(r.tries).toBe(3);
    expect(textOf(r)).toBe('答：wait 12000 third');
    expect(r.headers.at(-1)?.['x-wxrelay-attempt']).toBe('3');
  }, 30_000);

  it.concurrent('25 s → the placeholder on the third request, and the next message gets the answer', async () => {
    const first = await stack.send('p-slow', { type: 'text', content: 'wait 25000 slow question' });
    expect(first.outcome).toBe('reply');
    expect(first.tries).toBe(3);
    expect(textOf(first)).toBe(PLACEHOLDER);
    expect(first.headers.at(-1)?.['x-wxrelay-reply']).toBe('placeholder');
    // After the answer is there (25 s after the question), any message fetches it.
    await new Promise((r) => setTimeout(r, Math.max(0, first.startedAt + 26_000 - Date.now())));
    const next = await stack.send('p-slow', { type: 'text', content: '?' });
    expect(next.outcome).toBe('reply');
    expect(next.tries).toBe(1);
    expect(textOf(next)).toBe('答：wait 25000 slow question');
    // The fetching message was not itself sent to the LLM.
    expect(stack.llm.requests.some((q) => JSON.stringify(q).includes('"content":"?"'))).toBe(false);
    // Nothing waits any more: a third message is handled as usual.
    const third = await stack.send('p-slow', { type: 'text', content: 'after' });
    expect(textOf(third)).toBe('答：after');
  }, 60_000);

  it.concurrent('a 3,000-byte answer is paged: page 1 with the marker, the rest on the next message', async () => {
    const r = await stack.send('p-long', { type: 'text', content: 'long 3000' });
    expect(r.tries).toBe(1);
    const page1 = textOf(r) ?? '';
    expect(page1.endsWith(`\n${MARKER}`)).toBe(true);
    expect(utf8Bytes(page1)).toBeLessThanOrEqual(2047);
    const next = await stack.send('p-long', { type: 'text', content: 'more' });
    const page2 = textOf(next) ?? '';
    expect(page2.endsWith(MARKER)).toBe(false);
    // Pages break at line ends (the break's whitespace is not repeated): nothing lost, nothing twice.
    const squash = (t: string): string => t.replace(/\s+/g, '');
    expect(squash(page1.slice(0, -MARKER.length)) + squash(page2)).toBe(squash(longAnswer(3000)));
  }, 30_000);

  it.concurrent('the welcome on follow goes back passively', async () => {
    const r = await stack.send('p-follow', { type: 'event', event: 'subscribe' });
    expect(r.outcome).toBe('reply');
    expect(r.reply?.reply.kind).toBe('text');
  }, 30_000);

  it.concurrent('safe mode: the answer comes back encrypted and signed', async () => {
    const r = await stack.send('p-safe', { type: 'text', content: 'wait 200 secret' }, { mode: 'safe' });
    expect(r.outcome).toBe('reply');
    expect(r.body).toContain('<Encrypt>');
    expect(r.body).toContain('<MsgSignature>');
    expect(r.body).not.toContain('secret');
    expect(textOf(r)).toBe('答：wait 200 secret');
  }, 30_000);
});

/**
 * Opens a safe-mode passive reply with node:crypto alone, as WeChat's documentation describes it
 * (not the project's crypto.ts): checks MsgSignature = sha1(sort(token, TimeStamp, Nonce, Encrypt)),
 * decrypts AES-256-CBC (key = base64(EncodingAESKey + "="), IV = its first 16 bytes, PKCS#7 to 32
 * bytes), and reads random(16) · length(4, big-endian) · XML · AppID. Returns the reply's Content.
 */
function openIndependently(body: string): string {
  const field = (name: string): string => {
    const m = new RegExp(`<${name}>(?:<!\\[CDATA\\[)?([^<\\]]*)(?:\\]\\]>)?</${name}>`).exec(body);
    if (m?.[1] === undefined) throw new Error(`no ${name} in ${body}`);
    return m[1];
  };
  const encrypt = field('Encrypt');
  const signature = createHash('sha1').update([TOKEN, field('TimeStamp'), field('Nonce'), encrypt].sort().join('')).digest('hex');
  expect(field('MsgSignature')).toBe(signature);
  const key = Buffer.from(`${AES_KEY}=`, 'base64');
  const decipher = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16));
  decipher.setAutoPadding(false);
  const padded = Buffer.concat([decipher.update(Buffer.from(encrypt, 'base64')), decipher.final()]);
  const pad = padded.at(-1) ?? 0;
  expect(pad).toBeGreaterThanOrEqual(1);
  expect(pad).toBeLessThanOrEqual(32);
  const plain = padded.subarray(0, padded.length - pad);
  const length = plain.readUInt32BE(16);
  const xml = plain.subarray(20, 20 + length).toString('utf8');
  expect(plain.subarray(20 + length).toString('utf8')).toBe(APP.appId);
  const content = /<Content><!\[CDATA\[([\s\S]*?)\]\]><\/Content>/.exec(xml);
  if (content?.[1] === undefined) throw new Error(`no Content in ${xml}`);
  return content[1];
}

describe('REPLY_MODE=passive in safe mode', () => {
  it.concurrent('answers and placeholders are encrypted and signed (opened by an independent implementation)', async () => {
    const fast = await stack.send('p-safe-fast', { type: 'text', content: 'wait 100 cipher' }, { mode: 'safe' });
    expect(fast.outcome).toBe('reply');
    expect(openIndependently(fast.body)).toBe('答：wait 100 cipher');
    // Not ready by the third attempt: the placeholder, encrypted; then the answer from the inbox.
    const slow = await stack.send('p-safe-slow', { type: 'text', content: 'wait 16000 cipher later' }, { mode: 'safe' });
    expect(slow.tries).toBe(3);
    expect(textOf(slow)).toBe(PLACEHOLDER);
    expect(openIndependently(slow.body)).toBe(PLACEHOLDER);
    await new Promise((r) => setTimeout(r, Math.max(0, slow.startedAt + 17_000 - Date.now())));
    const next = await stack.send('p-safe-slow', { type: 'text', content: 'next' }, { mode: 'safe' });
    expect(textOf(next)).toBe('答：wait 16000 cipher later');
    expect(openIndependently(next.body)).toBe('答：wait 16000 cipher later');
  }, 40_000);
});

describe('REPLY_MODE=passive: what it never does, and what it counts', () => {
  it('made no customer-service call at all, and counted each channel', async () => {
    // Runs after the concurrent cases above (a describe's tests run in order).
    expect(stack.wechat.deliveries).toHaveLength(0);
    expect(stack.wechat.calls.filter((c) => c.path.startsWith('/cgi-bin/message/custom'))).toHaveLength(0);
    const g = stack.gatewayMetricsUrls[0]!;
    expect(await scrape(g, 'wxrelay_answers_total', { channel: 'passive-1' })).toBeGreaterThanOrEqual(4);
    expect(await scrape(g, 'wxrelay_answers_total', { channel: 'passive-2' })).toBeGreaterThanOrEqual(1);
    expect(await scrape(g, 'wxrelay_answers_total', { channel: 'passive-3' })).toBeGreaterThanOrEqual(1);
    expect(await scrape(g, 'wxrelay_answers_total', { channel: 'inbox' })).toBeGreaterThanOrEqual(2);
    expect(await scrape(g, 'wxrelay_gateway_placeholders_total')).toBeGreaterThanOrEqual(1);
    expect(await scrape(g, 'wxrelay_gateway_hold_seconds_count', { result: 'lapsed' })).toBeGreaterThanOrEqual(3);
    expect(await scrape(g, 'wxrelay_gateway_held_requests')).toBe(0);
    expect(await scrape(stack.workerMetricsUrls[0]!, 'wxrelay_answers_total', { channel: 'customer-service' })).toBe(0);
    expect(await scrape(stack.workerMetricsUrls[0]!, 'wxrelay_inbox_pending_answers')).toBe(0);
  });
});

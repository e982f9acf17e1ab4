/**
 * REPLY_MODE=auto end to end (verified account): a fast answer goes back in the HTTP answer, a slow
 * one by the customer-service API, never both. Real processes, the simulator playing WeChat.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP, scrape, startReplyStack, type ReplyStack } from './support/reply-stack.js';

let stack: ReplyStack;

function rulesFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'wxrelay-auto-')), 'rules.yaml');
  writeFileSync(file, 'rules:\n  - match: { msgType: text, content: { regex: "^ping" } }\n    reply: pong\n');
  return file;
}

beforeAll(async () => {
  // A hold long enough that an instant rule is always within it on a loaded machine, and shorter
  // than the 3 s LLM below, which therefore can never be: each case has one possible channel.
  stack = await startReplyStack({ mode: 'auto', workers: 2, gatewayEnv: { AUTO_HOLD_MS: '2500' }, workerEnv: { REPLY_RULES_FILE: rulesFile() } });
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

const deliveriesTo = (openid: string) => stack.wechat.deliveries.filter((d) => d.touser === openid);

describe('REPLY_MODE=auto', () => {
  it('a keyword rule\'s answer arrives passively: no customer-service call, no quota spent', async () => {
    const r = await stack.send('a-rule', { type: 'text', content: 'ping' });
    expect(r.outcome).toBe('reply');
    expect(r.tries).toBe(1);
    expect(r.reply?.reply).toEqual({ kind: 'text', content: 'pong' });
    // Give a stray API send every chance to show up.
    await new Promise((res) => setTimeout(res, 1_000));
    expect(deliveriesTo('a-rule')).toHaveLength(0);
    expect(stack.wechat.calls.filter((c) => c.path === '/cgi-bin/message/custom/send')).toHaveLength(0);
    // The quota ledger reserved nothing for this user.
    const redis = new Redis(stack.redis.url);
    try {
      expect(await redis.zcard(`wx:cs-sends:${APP.appId}:a-rule`)).toBe(0);
    } finally {
      redis.disconnect();
    }
  }, 30_000);

  it('a 3 s LLM answer: `success` at once, then the customer-service API, exactly once', async () => {
    const r = await stack.send('a-slow', { type: 'text', content: 'wait 3000 tell me' });
    expect(r.outcome).toBe('ack');
    expect(r.tries).toBe(1);
    // The ack came while the LLM was still thinking: nothing had been sent yet.
    expect(r.headers[0]?.['x-wxrelay-reply']).toBeUndefined();
    await expect.poll(() => deliveriesTo('a-slow').length, { timeout: 20_000 }).toBe(1);
    expect(deliveriesTo('a-slow')[0]).toMatchObject({ msgtype: 'text', body: { text: { content: '答：wait 3000 tell me' } } });
    await new Promise((res) => setTimeout(res, 1_000));
    expect(deliveriesTo('a-slow')).toHaveLength(1);
  }, 30_000);

  it('many concurrent users mix both paths: each answer arrives once, by one channel', async () => {
    const users = Array.from({ length: 60 }, (_, i) => ({ user: `a-mix-${i}`, content: i % 3 === 0 ? `wait ${2000 + (i % 5) * 200} q${i}` : i % 3 === 1 ? `ping ${i}` : `wait 3000 q${i}` }));
    const results = await Promise.all(users.map((u) => stack.send(u.user, { type: 'text', content: u.content })));
    const passive = results.filter((r) => r.outcome === 'reply');
    const acked = results.filter((r) => r.outcome === 'ack');
    expect(passive.length + acked.length).toBe(users.length);
    // Every `ping` (instant) went back passively; every 3 s one (longer than the hold) by the API.
    for (const [i, u] of users.entries()) {
      if (i % 3 === 1) expect(results[i]?.outcome, u.content).toBe('reply');
      if (i % 3 === 2) expect(results[i]?.outcome, u.content).toBe('ack');
    }
    // Each user acked gets exactly one API send; each answered passively gets none.
    await expect.poll(() => users.filter((u, i) => results[i]?.outcome === 'ack' && deliveriesTo(u.user).length === 0).length, { timeout: 30_000 }).toBe(0);
    await new Promise((res) => setTimeout(res, 1_500));
    for (const [i, u] of users.entries()) expect(deliveriesTo(u.user).length, u.content).toBe(results[i]?.outcome === 'ack' ? 1 : 0);
    // And the metrics agree: passive answers at the gateway, API answers at the workers.
    const passiveCount = await scrape(stack.gatewayMetricsUrls[0]!, 'wxrelay_answers_total', { channel: 'passive-1' });
    expect(passiveCount).toBeGreaterThanOrEqual(passive.length);
    let byApi = 0;
    for (const url of stack.workerMetricsUrls) byApi += await scrape(url, 'wxrelay_answers_total', { channel: 'customer-service' });
    expect(byApi).toBe(stack.wechat.deliveries.length);
  }, 60_000);
});

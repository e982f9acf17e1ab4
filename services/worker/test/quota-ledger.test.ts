import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '@wxrelay/testkit';
import { createQuotaLedger, triggerTime, windowTrigger } from '../src/delivery/ledger.js';

let redis: TestRedis;
let client: Redis;
beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url, { maxRetriesPerRequest: null });
  client.on('error', () => undefined);
});
afterAll(async () => {
  client.disconnect();
  await redis.close();
});

// Keys expire on Redis's real clock, so the ledger's clock starts now.
const T0 = Date.now();
const H = 3600_000;

describe('createQuotaLedger', () => {
  it('runs its scripts by digest (EVALSHA), and still works after Redis forgot them (SCRIPT FLUSH)', async () => {
    const ledger = createQuotaLedger({ redis: client, appId: redis.uniquePrefix('app') });
    const calls = async (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(await client.info('commandstats'))?.[1] ?? 0);
    await client.config('RESETSTAT');
    await ledger.grant('u1', 'message', T0, 'm1');
    for (let i = 1; i <= 5; i++) expect(await ledger.reserve('u1', 1, `r${i}`, T0 + i * 1000)).toBe(1);
    await client.script('FLUSH');
    await ledger.grant('u1', 'message', T0 + H, 'm2');
    expect(await ledger.reserve('u1', 1, 'r6', T0 + H + 1)).toBe(1);
    // 8 calls: each script's source travels on its first use and once after the flush, no more.
    const [evals, bySha] = [await calls('eval'), await calls('evalsha')];
    expect(evals).toBeLessThanOrEqual(4); // with EVAL on every call: 8
    expect(bySha).toBeGreaterThanOrEqual(4);
  });

  it('allows 5 messages per user message, within 48 h', async () => {
    const ledger = createQuotaLedger({ redis: client, appId: redis.uniquePrefix('app') });
    await ledger.grant('u1', 'message', T0, 'm1');
    expect(await ledger.reserve('u1', 3, 'r1', T0 + 1000)).toBe(3);
    expect(await ledger.reserve('u1', 3, 'r2', T0 + 2000)).toBe(2);
    expect(await ledger.reserve('u1', 1, 'r3', T0 + 3000)).toBe(0);
    // Re-reserving under the same id (a retried job) is answered from the ledger, not charged again.
    expect(await ledger.reserve('u1', 3, 'r1', T0 + 4000)).toBe(3);
    await ledger.grant('u1', 'message', T0 + H, 'm2');
    expect(await ledger.reserve('u1', 1, 'r4', T0 + H + 1)).toBe(1);
    expect(await ledger.reserve('u1', 1, 'r5', T0 + 49 * H)).toBe(0);
  });

  it('allows 3 within a minute after an event', async () => {
    const ledger = createQuotaLedger({ redis: client, appId: redis.uniquePrefix('app') });
    await ledger.grant('u1', 'event', T0, 'e1');
    expect(await ledger.reserve('u1', 5, 'r1', T0 + 1000)).toBe(3);
    await ledger.grant('u1', 'event', T0 + 10_000, 'e2');
    expect(await ledger.reserve('u1', 1, 'r2', T0 + 70_001)).toBe(0);
  });

  it('has no quota for a user who never opened a window', async () => {
    const ledger = createQuotaLedger({ redis: client, appId: redis.uniquePrefix('app') });
    expect(await ledger.reserve('nobody', 1, 'r', T0)).toBe(0);
  });

  it('does not let a late-recorded older trigger, or a repeated one, reset the count', async () => {
    const ledger = createQuotaLedger({ redis: client, appId: redis.uniquePrefix('app') });
    await ledger.grant('u1', 'message', T0 + 10, 'B');
    expect(await ledger.reserve('u1', 5, 'r1', T0 + 20)).toBe(5);
    await ledger.grant('u1', 'message', T0, 'A');
    await ledger.grant('u1', 'message', T0 + 10, 'B');
    expect(await ledger.reserve('u1', 1, 'r2', T0 + 30)).toBe(0);
  });

  it('counts replies sent after a newer trigger even when that trigger is recorded later', async () => {
    const ledger = createQuotaLedger({ redis: client, appId: redis.uniquePrefix('app') });
    await ledger.grant('u1', 'message', T0, 'A');
    expect(await ledger.reserve('u1', 4, 'reply-A', T0 + 5_000)).toBe(4); // sent after B arrived
    await ledger.grant('u1', 'message', T0 + 1_000, 'B'); // B was sent at +1 s, recorded now
    expect(await ledger.reserve('u1', 5, 'reply-B', T0 + 6_000)).toBe(1);
  });

  it('believes WeChat when it says the quota is used up', async () => {
    const ledger = createQuotaLedger({ redis: client, appId: redis.uniquePrefix('app') });
    await ledger.grant('u1', 'message', T0, 'A');
    await ledger.exhaust('u1');
    expect(await ledger.reserve('u1', 1, 'r', T0 + 1)).toBe(0);
    await ledger.grant('u1', 'message', T0 + 2, 'B');
    expect(await ledger.reserve('u1', 1, 'r2', T0 + 3)).toBe(1);
  });
});

describe('windowTrigger / triggerTime', () => {
  const base = { toUserName: 'gh_1', fromUserName: 'u1', createTime: 1_700_000_000 };
  it.each([
    [{ ...base, kind: 'text', msgId: '1', content: 'hi' }, 'message'],
    [{ ...base, kind: 'image', msgId: '1', picUrl: 'p', mediaId: 'm' }, 'message'],
    [{ ...base, kind: 'event', event: 'subscribe' }, 'event'],
    [{ ...base, kind: 'event', event: 'CLICK', eventKey: 'K' }, 'event'],
    [{ ...base, kind: 'event', event: 'VIEW', eventKey: 'https://x' }, undefined],
    [{ ...base, kind: 'event', event: 'unsubscribe' }, undefined],
    [{ ...base, kind: 'unknown', msgType: 'x', raw: {} }, undefined],
  ] as const)('%o opens %s', (message, expected) => {
    expect(windowTrigger(message as never)).toBe(expected);
  });

  it('uses CreateTime when plausible, else the gateway clock', () => {
    const message = { ...base, kind: 'text', msgId: '1', content: 'hi' } as const;
    expect(triggerTime({ receivedAt: 1_700_000_000_800, message })).toBe(1_700_000_000_000);
    expect(triggerTime({ receivedAt: 1_800_000_000_000, message })).toBe(1_800_000_000_000);
  });
});

import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '@wxrelay/testkit';
import { answerKeys, createAnswerStore, type AnswerStore } from './answers.js';

let redis: TestRedis;
let conn: Redis;
let sub: Redis;

beforeAll(async () => {
  redis = await startRedis();
  conn = new Redis(redis.url);
  sub = new Redis(redis.url);
});
afterAll(async () => {
  conn.disconnect();
  sub.disconnect();
  await redis.close();
});

const page = (content: string): string => JSON.stringify({ kind: 'text', content });
const PLACEHOLDER = page('thinking');

function store(inboxTtlMs = 60_000): AnswerStore {
  return createAnswerStore(conn, answerKeys(`${redis.uniquePrefix('ans')}:wx-inbound:`), { answerTtlMs: 60_000, inboxTtlMs });
}

describe('the answer store (real Redis): who delivers an answer is decided once', () => {
  it('a recorded answer is claimed by one attempt; any later claim finds it owned', async () => {
    const s = store();
    expect(await s.record('j1', [page('hi')])).toBe('recorded');
    expect(await s.claim('take', 'j1', 'u1', 1, Date.now())).toEqual({ kind: 'answer', attempt: 1, page: page('hi'), source: '', pages: 1 });
    expect(await s.claim('take', 'j1', 'u1', 1, Date.now())).toEqual({ kind: 'owned', attempt: 1, owner: '1' });
    // The API cannot take it any more either.
    expect(await s.record('j1', undefined)).toBe('1');
  });

  it('publishes the job id when it records, on the store\'s channel', async () => {
    const s = store();
    await sub.subscribe(s.keys.channel);
    const got = new Promise<string>((resolve) => sub.once('message', (_c: string, m: string) => resolve(m)));
    await s.record('j-pub', []);
    expect(await got).toBe('j-pub');
    await sub.unsubscribe(s.keys.channel);
  });

  it('before the answer: pending; auto\'s close hands it to the API, and the worker learns so', async () => {
    const s = store();
    expect((await s.claim('take', 'j2', 'u2', 1, Date.now())).kind).toBe('pending');
    expect((await s.claim('close', 'j2', 'u2', 1, Date.now())).kind).toBe('closed');
    expect(await s.record('j2', [page('late')])).toBe('cs');
    expect((await s.claim('take', 'j2', 'u2', 2, Date.now())).kind).toBe('owned');
  });

  it('a close that meets a ready answer takes it instead (never both channels)', async () => {
    const s = store();
    await s.record('j3', [page('just in time')]);
    expect(await s.claim('close', 'j3', 'u3', 1, Date.now())).toMatchObject({ kind: 'answer', page: page('just in time') });
    expect(await s.record('j3', undefined)).toBe('1');
  });

  it('a retry is numbered by Redis, and the older attempt it replaces can no longer claim', async () => {
    const s = store();
    expect(await s.claim('take', 'j4', 'u4', 0, Date.now())).toEqual({ kind: 'pending', attempt: 2 });
    await s.record('j4', [page('a')]);
    expect(await s.claim('take', 'j4', 'u4', 1, Date.now())).toEqual({ kind: 'stale', attempt: 1 });
    expect(await s.claim('take', 'j4', 'u4', 0, Date.now())).toMatchObject({ kind: 'answer', attempt: 3 });
  });

  it('the last attempt without an answer: the inbox; the next message fetches it once it is there', async () => {
    const s = store();
    expect((await s.claim('last', 'j5', 'u5', 3, Date.now())).kind).toBe('inbox');
    expect(await s.pending()).toBe(1);
    // Not ready yet: the fetching message gets the placeholder; the answer stays pending.
    expect(await s.fetch('u5', 'j6', PLACEHOLDER)).toEqual({ kind: 'pending', expired: 0 });
    expect(await s.claim('take', 'j6', 'u5', 1, Date.now())).toMatchObject({ kind: 'answer', page: PLACEHOLDER, source: 'placeholder' });
    expect(await s.record('j5', [page('finally')])).toBe('recorded');
    expect(await s.fetch('u5', 'j7', PLACEHOLDER)).toEqual({ kind: 'fetched', expired: 0, waiting: 0 });
    expect(await s.claim('take', 'j7', 'u5', 1, Date.now())).toMatchObject({ kind: 'answer', page: page('finally'), source: 'inbox' });
    expect(await s.fetch('u5', 'j8', PLACEHOLDER)).toEqual({ kind: 'empty', expired: 0 });
    expect(await s.pending()).toBe(0);
  });

  it('a long answer: page 1 to the attempt, the rest to the inbox, one page per fetch, in order', async () => {
    const s = store();
    await s.record('j9', [page('p1'), page('p2'), page('p3')]);
    expect(await s.claim('take', 'j9', 'u9', 1, Date.now())).toMatchObject({ kind: 'answer', page: page('p1'), pages: 3 });
    expect(await s.fetch('u9', 'j10', PLACEHOLDER)).toEqual({ kind: 'fetched', expired: 0, waiting: 1 });
    expect(await s.fetch('u9', 'j11', PLACEHOLDER)).toEqual({ kind: 'fetched', expired: 0, waiting: 0 });
    expect((await s.claim('take', 'j10', 'u9', 1, Date.now())) as { page?: string }).toMatchObject({ page: page('p2') });
    expect((await s.claim('take', 'j11', 'u9', 1, Date.now())) as { page?: string }).toMatchObject({ page: page('p3') });
    expect((await s.fetch('u9', 'j12', PLACEHOLDER)).kind).toBe('empty');
  });

  it('records and fetches are idempotent for a retried job', async () => {
    const s = store();
    expect(await s.record('j13', [page('once')])).toBe('recorded');
    expect(await s.record('j13', [page('twice')])).toBe('kept');
    await s.claim('last', 'j14', 'u13', 3, Date.now());
    await s.record('j14', [page('a'), page('b')]);
    expect((await s.fetch('u13', 'j15', PLACEHOLDER)).kind).toBe('fetched');
    expect(await s.fetch('u13', 'j15', PLACEHOLDER)).toEqual({ kind: 'kept', expired: 0 });
    // The retried fetch did not take page b: the next message does.
    expect((await s.fetch('u13', 'j16', PLACEHOLDER)).kind).toBe('fetched');
    expect((await s.claim('take', 'j16', 'u13', 1, Date.now())) as { page?: string }).toMatchObject({ page: page('b') });
  });

  it('pending answers expire: the sweep counts each once and empties the inbox', async () => {
    const s = store(1_000);
    const now = Date.now();
    await s.claim('last', 'j17', 'u17', 3, now);
    await s.claim('last', 'j18', 'u18', 3, now);
    expect(await s.sweep(now)).toBe(0);
    expect(await s.sweep(now + 1_001)).toBe(2);
    expect(await s.sweep(now + 1_001)).toBe(0);
    expect(await s.pending()).toBe(0);
    expect((await s.fetch('u17', 'j19', PLACEHOLDER)).kind).toBe('empty');
  });

  it('a fetch that finds an expired answer (gone from Redis) skips it and counts it', async () => {
    const s = store();
    await s.claim('last', 'j20', 'u20', 3, Date.now());
    await conn.del(`${s.keys.answerPrefix}j20`);
    await s.claim('last', 'j21', 'u20', 3, Date.now());
    await s.record('j21', [page('second')]);
    expect(await s.fetch('u20', 'j22', PLACEHOLDER)).toEqual({ kind: 'fetched', expired: 1, waiting: 0 });
    expect(await s.pending()).toBe(0);
  });
});

import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { INBOUND_QUEUE } from '@wxrelay/shared';
import { turnKeys } from '@wxrelay/shared/queue';
import { startRedis, type TestRedis } from '@wxrelay/testkit';
import { createUserTurns, type UserTurns } from '../src/user-turns.js';
import { enqueue, producer, textMessage } from './support.js';

let redis: TestRedis;
let client: Redis;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url, { maxRetriesPerRequest: null });
  client.on('error', () => undefined);
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  client.disconnect();
  await redis.close();
});

/** A fresh queue, its turns, and a worker that only pops jobs (it never runs a processor). */
function setup() {
  const prefix = redis.uniquePrefix('q');
  const appId = redis.uniquePrefix('app');
  const p = producer(redis.url, prefix);
  const popper = new Worker(INBOUND_QUEUE, null, { connection: client, prefix, autorun: false });
  const turns: UserTurns = createUserTurns({
    redis: client,
    appId,
    jobKeyPrefix: p.queue.toKey(''),
    eventsKey: p.queue.toKey('events'),
    activeKey: p.queue.toKey('active'),
    waitKey: p.queue.toKey('wait'),
  });
  cleanups.push(async () => {
    await popper.close();
    await p.queue.close();
    p.connection.disconnect();
  });
  const say = async (openid: string) => {
    const id = await enqueue(p.queue, textMessage(openid, 'x'));
    const job = await p.queue.getJob(id);
    return { id, ts: job!.timestamp };
  };
  /** Moves the next waiting job to `active`, as a worker's fetch does, without running anything. */
  const pop = async () => (await popper.getNextJob('token', { block: false }))?.id;
  const cursor = () => client.hgetall(`wx:turns-cursor:${appId}:${prefix}:${INBOUND_QUEUE}`);
  return { queue: p.queue, turns, say, pop, cursor, appId };
}

const calls = async (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(await client.info('commandstats'))?.[1] ?? 0);

describe('createUserTurns', () => {
  it('a job popped but not registered yet (its worker is slow or dead) blocks a later job of its user', async () => {
    const t = setup();
    const a = await t.say('u1');
    const b = await t.say('u1');
    const other = await t.say('u2');
    expect(await t.pop()).toBe(a.id); // a's worker never gets to take()
    expect(await t.pop()).toBe(b.id);
    expect(await t.turns.take('u1', b.id, b.ts)).toBe(false);
    expect(await t.turns.take('u2', other.id, other.ts)).toBe(true);
    expect(await t.turns.take('u1', a.id, a.ts)).toBe(true);
    expect(await t.turns.release('u1', a.id)).toBe(b.id);
    expect(await t.turns.take('u1', b.id, b.ts)).toBe(true);
  });

  it('a later job waits for an earlier one still in the wait list, and for a job that releases without taking', async () => {
    const t = setup();
    const a = await t.say('u1');
    const b = await t.say('u1');
    expect(await t.turns.take('u1', b.id, b.ts)).toBe(false); // a has not even been popped
    expect(await t.turns.release('u1', a.id)).toBe(b.id); // a needed no reply
    expect(await t.turns.take('u1', b.id, b.ts)).toBe(true);
  });

  it('drops a head whose job is gone', async () => {
    const t = setup();
    const a = await t.say('u1');
    const b = await t.say('u1');
    expect(await t.turns.take('u1', b.id, b.ts)).toBe(false);
    await t.queue.remove(a.id);
    expect(await t.turns.take('u1', b.id, b.ts)).toBe(true);
  });

  it('reads each job once however many jobs are active: no scan of the active list per take', async () => {
    const t = setup();
    const jobs = [];
    for (let i = 0; i < 300; i++) jobs.push(await t.say(`user-${i}`));
    for (let i = 0; i < 300; i++) await t.pop();
    await client.config('RESETSTAT');
    for (const [i, j] of jobs.entries()) expect(await t.turns.take(`user-${i}`, j.id, j.ts)).toBe(true);
    expect(await calls('lrange')).toBe(0);
    expect(await calls('hmget')).toBe(300); // each job's payload once, when its 'added' entry is read
    expect((await t.cursor()).gap).toBe('0');
  });

  it('falls back to scanning the active list while jobs may have been trimmed from the event stream', async () => {
    const t = setup();
    const a = await t.say('u1');
    const b = await t.say('u1');
    await client.xtrim(t.queue.toKey('events'), 'MAXLEN', 0); // nobody read the stream before it was capped
    await t.pop();
    await t.pop();
    expect(await t.turns.take('u1', b.id, b.ts)).toBe(false); // a found in `active`
    expect((await t.cursor()).gap).toBe('0'); // the wait list was empty: every job has been seen since
    expect(await t.turns.take('u1', a.id, a.ts)).toBe(true);
    expect(await t.turns.release('u1', a.id)).toBe(b.id);

    // The cursor's own entry trimmed later: the same fallback until the wait list has been empty.
    const c = await t.say('u3');
    const d = await t.say('u3');
    await client.xtrim(t.queue.toKey('events'), 'MAXLEN', 0);
    const e = await t.say('u4');
    await t.pop();
    await t.pop();
    expect(await t.turns.take('u3', d.id, d.ts)).toBe(false);
    expect((await t.cursor()).gap).toBe('1'); // e is still waiting
    expect(await t.turns.take('u4', e.id, e.ts)).toBe(true);
    await t.pop();
    expect(await t.turns.take('u3', c.id, c.ts)).toBe(true);
    expect((await t.cursor()).gap).toBe('0');
  });

  it('while the stream has a gap, each active job is read once however many takes follow (a backlog past the cap drains at full speed)', async () => {
    const t = setup();
    const jobs = [];
    for (let i = 0; i < 200; i++) jobs.push(await t.say(`user-${i}`));
    const sibling = await t.say('user-0'); // keeps the wait list non-empty: the gap stays open throughout
    await client.xtrim(t.queue.toKey('events'), 'MAXLEN', 0);
    for (let i = 0; i < 200; i++) await t.pop();
    await client.config('RESETSTAT');
    for (const [i, j] of jobs.entries()) expect(await t.turns.take(`user-${i}`, j.id, j.ts)).toBe(true);
    expect((await t.cursor()).gap).toBe('1');
    // Before: every take read every active job's payload (200 × 200); now each once.
    expect(await calls('hmget')).toBeLessThanOrEqual(200);
    expect(await calls('lrange')).toBe(200);
    // The order still holds for a job registered by the scan: the sibling waits for user-0's first job.
    expect(await t.pop()).toBe(sibling.id);
    expect(await t.turns.take('user-0', sibling.id, sibling.ts)).toBe(false);
    expect(await t.turns.release('user-0', jobs[0]!.id)).toBe(sibling.id);
    expect(await t.turns.take('user-0', sibling.id, sibling.ts)).toBe(true);
    expect((await t.cursor()).gap).toBe('0');
    expect(await client.exists(turnKeys(t.appId, t.queue.toKey('')).gapSeenKey)).toBe(0);
  });

  it('the head is told who waits behind it (with their payloads); a marked job learns it was answered only once it holds the turn', async () => {
    const t = setup();
    const a = await t.say('u1');
    const b = await t.say('u1');
    const c = await t.say('u1');
    const head = await t.turns.enter('u1', a.id, a.ts, 9);
    expect(head.kind).toBe('turn');
    const followers = head.kind === 'turn' ? head.followers : [];
    expect(followers.map((f) => f.jobId)).toEqual([b.id, c.id]);
    expect(followers[0]?.data).toMatchObject({ v: 1, message: { fromUserName: 'u1' } });
    await t.turns.markAnswered(a.id, [b.id, c.id]);
    // Not its turn yet: "wait", not "answered" (a has not sent anything yet).
    expect(await t.turns.enter('u1', b.id, b.ts)).toEqual({ kind: 'wait' });
    expect(await t.turns.release('u1', a.id)).toBe(b.id);
    expect(await t.turns.enter('u1', b.id, b.ts)).toEqual({ kind: 'answered', by: a.id });
    expect(await t.turns.release('u1', b.id)).toBe(c.id);
    // Markers are taken back only by the job that set them.
    await t.turns.clearAnswered('someone-else', [c.id]);
    expect(await t.turns.enter('u1', c.id, c.ts)).toEqual({ kind: 'answered', by: a.id });
    await t.turns.clearAnswered(a.id, [c.id]);
    expect(await t.turns.enter('u1', c.id, c.ts, 9)).toEqual({ kind: 'turn', followers: [] });
  });
});

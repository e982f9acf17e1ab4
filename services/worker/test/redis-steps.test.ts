import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_JOB_OPTIONS, INBOUND_QUEUE, JOB_NAMES, type InboundJobPayload } from '@wxrelay/shared';
import { answerKeys, lockKey, turnKeys } from '@wxrelay/shared/queue';
import { startRedis, type TestRedis } from '@wxrelay/testkit';
import { createQuotaLedger, ledgerKeys } from '../src/delivery/ledger.js';
import { LockLost } from '../src/errors.js';
import type { ProgressStore, ReplyProgress } from '../src/pipeline/job.js';
import { createRedisSteps, type JobSteps } from '../src/pipeline/redis-steps.js';
import { reply } from '../src/wechat/messages.js';
import { nextMsgId, textMessage } from './support.js';

/*
 * The job's Redis steps as one script each (queue/job-scripts.ts), against a real Redis and jobs
 * BullMQ added: what each command does, and what it refuses to do without the job's lock.
 */

let redis: TestRedis;
let client: Redis;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});
afterAll(async () => {
  client?.disconnect();
  await redis?.close();
});

function setup() {
  const prefix = redis.uniquePrefix('steps');
  const appId = redis.uniquePrefix('app');
  const queue = new Queue(INBOUND_QUEUE, { connection: client, prefix });
  const jobPrefix = queue.toKey('');
  const ledger = createQuotaLedger({ redis: client, appId });
  const steps: JobSteps = createRedisSteps({ redis: client, appId, jobKeyPrefix: jobPrefix, ledger });
  const add = async (openid: string, opts: { delay?: number } = {}) => {
    const message = textMessage(openid, 'hi');
    const dedupKey = nextMsgId();
    const payload: InboundJobPayload = { v: 1, dedupKey, mode: 'plain', receivedAt: Date.now(), message };
    const job = await queue.add(JOB_NAMES.inbound, payload, { ...DEFAULT_JOB_OPTIONS, jobId: `msg-${dedupKey}`, ...opts });
    return { id: job.id!, timestamp: job.timestamp, payload };
  };
  /** The lock BullMQ would hold for a worker that took the job. */
  const lock = (jobId: string, token: string) => client.set(lockKey(jobPrefix, jobId), token, 'PX', 60_000);
  return { queue, jobPrefix, appId, ledger, steps, add, lock, turns: turnKeys(appId, jobPrefix), answers: answerKeys(jobPrefix) };
}

/** A progress store over the job's data, as the pipeline's (jobContext) keeps it. */
function store(initial: ReplyProgress = { sent: 0 }): ProgressStore & { written: ReplyProgress[] } {
  let current = initial;
  const written: ReplyProgress[] = [];
  return {
    written,
    get current() {
      return current;
    },
    save: () => Promise.reject(new Error('the steps write through their own scripts')),
    keep(next) {
      current = next;
    },
    encode: (next) => JSON.stringify({ progress: next }),
    saved(next) {
      current = next;
      written.push(next);
    },
  };
}

const dataOf = async (jobPrefix: string, jobId: string) => (JSON.parse((await client.hget(jobPrefix + jobId, 'data')) ?? '{}') as { progress?: ReplyProgress }).progress;
const parts = (n: number) => Array.from({ length: n }, (_, i) => reply.text(`part ${i + 1}`));
const plannedFrom = (base: ReplyProgress, all: number) => (granted: number): ReplyProgress => ({ ...base, parts: parts(Math.min(all, granted)), cut: granted < all });
const grant = (at: number) => ({ trigger: 'message' as const, at, triggerId: `t-${at}` });

describe('the job steps as one Redis command each', () => {
  it('start records the window and takes the turn in one command; a later job of the user waits; the inbox is peeked at only when asked', async () => {
    const s = setup();
    const a = await s.add('u-start');
    const b = await s.add('u-start');
    const now = Date.now();
    const first = await s.steps.start({ openid: 'u-start', jobId: a.id, token: undefined }, { score: a.timestamp, followers: 9, grant: grant(now), peekInbox: true });
    expect(first).toEqual({ kind: 'turn', followers: [{ jobId: b.id, data: b.payload }], inbox: false });
    expect(await client.hget(ledgerKeys(s.appId, 'u-start').window, 'triggerAt')).toBe(String(now));
    expect(await s.steps.start({ openid: 'u-start', jobId: b.id, token: undefined }, { score: b.timestamp, followers: 0 })).toEqual({ kind: 'wait' });
    // An answer waiting in the user's inbox: a fetch would find it.
    const c = await s.add('u-inbox');
    await client.rpush(s.answers.inboxPrefix + 'u-inbox', 'msg-older');
    expect(await s.steps.start({ openid: 'u-inbox', jobId: c.id, token: undefined }, { score: c.timestamp, followers: 0, peekInbox: true })).toMatchObject({ kind: 'turn', inbox: true });
  });

  it('plan, under the lock: the absorbed windows, the reservation, the planned progress and the markers together', async () => {
    const s = setup();
    const a = await s.add('u-plan');
    await s.lock(a.id, 'tok');
    await s.ledger.grant('u-plan', 'message', Date.now() - 1000, 'first');
    const progress = store({ sent: 0, replies: [reply.text('x')] });
    const granted = await s.steps.plan({ openid: 'u-plan', jobId: a.id, token: 'tok', progress }, { grants: [grant(Date.now())], want: 2, planned: plannedFrom(progress.current, 2), absorbed: ['msg-b', 'msg-c'], now: Date.now() });
    expect(granted).toBe(2);
    expect(await dataOf(s.jobPrefix, a.id)).toEqual({ sent: 0, replies: [reply.text('x')], parts: parts(2), cut: false });
    expect(progress.current.parts).toHaveLength(2);
    expect(await client.mget(s.turns.markerPrefix + 'msg-b', s.turns.markerPrefix + 'msg-c')).toEqual([a.id, a.id]);
    expect(await client.zcard(ledgerKeys(s.appId, 'u-plan').sends)).toBe(2);
    // The absorbed message's window was recorded first (the reservation counted against it).
    expect(await client.hget(ledgerKeys(s.appId, 'u-plan').window, 'triggerId')).toMatch(/^t-/);
    // Again (a retry): the reservation is the job's, nothing more is taken.
    expect(await s.steps.plan({ openid: 'u-plan', jobId: a.id, token: 'tok', progress: store() }, { grants: [], want: 2, planned: plannedFrom({ sent: 0 }, 2), absorbed: [], now: Date.now() })).toBe(2);
    expect(await client.zcard(ledgerKeys(s.appId, 'u-plan').sends)).toBe(2);
  });

  it('plan without the lock does nothing at all: no reservation, no write, no marker', async () => {
    const s = setup();
    const a = await s.add('u-lost');
    await s.lock(a.id, 'another-worker');
    await s.ledger.grant('u-lost', 'message', Date.now(), 'first');
    const progress = store();
    await expect(s.steps.plan({ openid: 'u-lost', jobId: a.id, token: 'tok', progress }, { grants: [], want: 1, planned: plannedFrom(progress.current, 1), absorbed: ['msg-b'], now: Date.now() })).rejects.toBeInstanceOf(LockLost);
    expect(await client.zcard(ledgerKeys(s.appId, 'u-lost').sends)).toBe(0);
    expect(await dataOf(s.jobPrefix, a.id)).toBeUndefined();
    expect(await client.exists(s.turns.markerPrefix + 'msg-b')).toBe(0);
  });

  it('plan cut to the quota: the cut parts written (the answers first), the markers with them; no quota: the answers only, no marker', async () => {
    const s = setup();
    const a = await s.add('u-cut');
    await s.lock(a.id, 'tok');
    await s.ledger.grant('u-cut', 'message', Date.now() - 1000, 'first');
    const progress = store({ sent: 0, replies: [reply.text('long')] });
    expect(await s.steps.plan({ openid: 'u-cut', jobId: a.id, token: 'tok', progress }, { grants: [], want: 7, planned: plannedFrom(progress.current, 7), absorbed: ['msg-b'], now: Date.now() })).toBe(5);
    expect(await dataOf(s.jobPrefix, a.id)).toMatchObject({ parts: parts(5), cut: true });
    expect(progress.written.map((p) => p.parts?.length)).toEqual([undefined, 5]);
    expect(await client.get(s.turns.markerPrefix + 'msg-b')).toBe(a.id);

    const b = await s.add('u-none');
    await s.lock(b.id, 'tok');
    const none = store({ sent: 0, replies: [reply.text('slow answer')] });
    expect(await s.steps.plan({ openid: 'u-none', jobId: b.id, token: 'tok', progress: none }, { grants: [], want: 1, planned: plannedFrom(none.current, 1), absorbed: ['msg-c'], now: Date.now() })).toBe(0);
    expect(await dataOf(s.jobPrefix, b.id)).toEqual({ sent: 0, replies: [reply.text('slow answer')] });
    expect(await client.exists(s.turns.markerPrefix + 'msg-c')).toBe(0);
  });

  it('finish releases the turn and wakes the next job of the user waiting in delayed; without the lock it leaves the turn', async () => {
    const s = setup();
    const a = await s.add('u-fin');
    const b = await s.add('u-fin', { delay: 60_000 });
    expect(await s.queue.getJobState(b.id)).toBe('delayed');
    await client.zadd(s.turns.turnsPrefix + 'u-fin', a.timestamp, a.id, b.timestamp + 1, b.id);
    await s.lock(a.id, 'tok');
    await expect(s.steps.finish({ openid: 'u-fin', jobId: a.id, token: 'not-mine' })).rejects.toBeInstanceOf(LockLost);
    expect(await client.zrange(s.turns.turnsPrefix + 'u-fin', '0', '-1')).toEqual([a.id, b.id]);
    await s.steps.finish({ openid: 'u-fin', jobId: a.id, token: 'tok' });
    expect(await client.zrange(s.turns.turnsPrefix + 'u-fin', '0', '-1')).toEqual([b.id]);
    // BullMQ's own promote: waiting, with its event.
    expect(await s.queue.getJobState(b.id)).toBe('waiting');
    const events = await client.xrange(s.queue.toKey('events'), '-', '+');
    expect(events.some(([, f]) => f[1] === 'waiting' && f[3] === b.id && f[5] === 'delayed')).toBe(true);
    await s.queue.close();
  });
});

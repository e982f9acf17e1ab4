import type { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_JOB_OPTIONS, JOB_NAMES, type InboundJobPayload } from '@wxrelay/shared';
import { startRedis, waitFor, type TestRedis } from '@wxrelay/testkit';
import { startFakeWechatApi, type FakeWechatApi } from '@wxrelay/simulator';
import { createWorkerMetrics } from '../src/metrics.js';
import { buildWorker, type RunningWorker } from '../src/worker.js';
import { captureLogger, enqueue, nextMsgId, producer, settled, textMessage, workerConfig } from './support.js';

const APP_ID = 'wxtestapp0002';
const APP_SECRET = 'test-app-secret-operations';
const STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized'];

let redis: TestRedis;
let wechat: FakeWechatApi;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
  wechat = await startFakeWechatApi({ appId: APP_ID, appSecret: APP_SECRET });
});
afterAll(async () => {
  await wechat.close();
  await redis.close();
});
beforeEach(() => {
  wechat.reset();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Harness {
  readonly queue: Queue;
  readonly worker: RunningWorker;
  /** The worker's `/metrics` exposition, as the listener renders it. */
  scrape(): Promise<string>;
}

/** A queue on a fresh prefix and a worker built for it (as main.ts builds one), not started. */
async function prepare(env: Record<string, string> = {}): Promise<Harness> {
  const prefix = redis.uniquePrefix('ops');
  const p = producer(redis.url, prefix);
  cleanups.push(async () => {
    await p.queue.close();
    p.connection.disconnect();
  });
  const config = workerConfig({
    WECHAT_APP_ID: APP_ID,
    WECHAT_APP_SECRET: APP_SECRET,
    WECHAT_API_BASE_URL: wechat.url,
    WECHAT_API_TIMEOUT_MS: '5000',
    REDIS_URL: redis.url,
    QUEUE_PREFIX: prefix,
    WORKER_CONCURRENCY: '4',
    WORKER_SHUTDOWN_TIMEOUT_MS: '5000',
    ...env,
  });
  const worker = await buildWorker(config, { log: captureLogger('info').log, metrics: createWorkerMetrics({ defaultMetrics: false }), stateAppId: redis.uniquePrefix('app'), turnRetryDelayMs: 50 });
  cleanups.push(() => worker.close());
  return { queue: p.queue, worker, scrape: () => worker.metrics.registry.metrics() };
}

/** The value of one series in an exposition text (undefined when absent). */
function series(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const m = /^([^{\s]+)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (m?.[1] !== name) continue;
    const have = (m[2] ?? '').split(',').filter(Boolean);
    if (have.length === wanted.length && wanted.every((w) => have.includes(w))) return Number(m[3]);
  }
  return undefined;
}

async function userSays(queue: Queue, openid: string, content: string): Promise<string> {
  wechat.userInteracted(openid, 'message');
  return enqueue(queue, textMessage(openid, content));
}

describe('worker operations metrics', () => {
  it('a fresh worker exports every operations metric, the labelled counters at 0', async () => {
    const h = await prepare();
    const text = await h.scrape();
    expect(series(text, 'wxrelay_worker_quota_refusals_total', { kind: 'cut' })).toBe(0);
    expect(series(text, 'wxrelay_worker_quota_refusals_total', { kind: 'none' })).toBe(0);
    expect(series(text, 'wxrelay_worker_token_refresh_failures_total')).toBe(0);
    expect(series(text, 'wxrelay_worker_paused')).toBe(0);
    for (const state of STATES) expect(series(text, 'wxrelay_queue_jobs', { queue: h.queue.name, state }), state).toBe(0);
    expect(series(text, 'wxrelay_queue_oldest_waiting_seconds', { queue: h.queue.name })).toBe(0);
  });

  it('reads the backlog: waiting and the oldest age before it starts, completed and failed once it worked, 0 waiting once drained', async () => {
    const h = await prepare();
    const ids: string[] = [];
    for (const user of ['u-ops-1', 'u-ops-2', 'u-ops-3']) ids.push(await userSays(h.queue, user, 'hello'));
    const jobs = await h.queue.getJobs(['wait']);
    const oldest = Math.min(...jobs.map((j) => j.timestamp));
    const t0 = Date.now();
    const before = await h.scrape();
    const t1 = Date.now();
    expect(series(before, 'wxrelay_queue_jobs', { queue: h.queue.name, state: 'waiting' })).toBe(3);
    const age = series(before, 'wxrelay_queue_oldest_waiting_seconds', { queue: h.queue.name }) ?? -1;
    expect(age).toBeGreaterThanOrEqual((t0 - oldest) / 1000);
    expect(age).toBeLessThanOrEqual((t1 - oldest) / 1000);

    // One send refused for good (48001): that job fails, the two others complete.
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: 48001 });
    h.worker.start();
    const states = (await Promise.all(ids.map((id) => settled(h.queue, id)))).map((r) => r.state).sort();
    expect(states).toEqual(['completed', 'completed', 'failed']);
    const after = await h.scrape();
    expect(series(after, 'wxrelay_queue_jobs', { queue: h.queue.name, state: 'waiting' })).toBe(0);
    expect(series(after, 'wxrelay_queue_jobs', { queue: h.queue.name, state: 'completed' })).toBe(2);
    expect(series(after, 'wxrelay_queue_jobs', { queue: h.queue.name, state: 'failed' })).toBe(1);
    expect(series(after, 'wxrelay_queue_oldest_waiting_seconds', { queue: h.queue.name })).toBe(0);
  });

  it('shows paused=1 while a 45009 pauses the workers, and 0 once the pause is over', async () => {
    const h = await prepare();
    h.worker.start();
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: 45009 });
    const id = await userSays(h.queue, 'u-ops-limit', 'hello');
    await waitFor(async () => (await h.queue.getJobState(id)) === 'delayed', 10_000, 'the job to wait the pause out');
    expect(series(await h.scrape(), 'wxrelay_worker_paused')).toBe(1);
    // The pause ends when the queue's rate-limit key goes (it expires after 10 minutes).
    await h.queue.removeRateLimitKey();
    expect(series(await h.scrape(), 'wxrelay_worker_paused')).toBe(0);
  });

  it('counts an answer cut to fit the quota (kind=cut) and a job with no quota left at all (kind=none)', async () => {
    const h = await prepare({ CS_CHUNK_BYTES: '64' });
    h.worker.start();
    // The echo of a long message needs more than the 5 messages a user message allows.
    const long = await userSays(h.queue, 'u-ops-long', '很长的消息'.repeat(40));
    expect((await settled(h.queue, long)).state).toBe('completed');
    // A message from 3 days ago: its 48 h window is closed, nothing may be sent.
    const openid = 'u-ops-late';
    const at = Date.now() - 3 * 24 * 3_600_000;
    const msgId = nextMsgId();
    const message = { ...textMessage(openid, 'hello', msgId), createTime: Math.floor(at / 1000) };
    const payload: InboundJobPayload = { v: 1, dedupKey: msgId, mode: 'plain', receivedAt: at, message };
    const late = `msg-${msgId}`;
    await h.queue.add(JOB_NAMES.inbound, payload, { ...DEFAULT_JOB_OPTIONS, jobId: late });
    const { state, job } = await settled(h.queue, late);
    expect(state).toBe('failed');
    expect(job.failedReason).toContain('quota');
    const text = await h.scrape();
    expect(series(text, 'wxrelay_worker_quota_refusals_total', { kind: 'cut' })).toBe(1);
    expect(series(text, 'wxrelay_worker_quota_refusals_total', { kind: 'none' })).toBe(1);
  });

  it('counts an access-token fetch that failed', async () => {
    const h = await prepare({ WECHAT_TOKEN_ENDPOINT: 'stable' });
    wechat.inject({ path: '/cgi-bin/stable_token', httpStatus: 502 });
    h.worker.start();
    const id = await userSays(h.queue, 'u-ops-token', 'hello');
    await waitFor(async () => series(await h.scrape(), 'wxrelay_worker_token_refresh_failures_total') === 1, 10_000, 'the failed fetch to be counted');
    // The job's retry fetches a token and replies.
    expect((await settled(h.queue, id)).state).toBe('completed');
    expect(series(await h.scrape(), 'wxrelay_worker_token_refresh_failures_total')).toBe(1);
  });
});

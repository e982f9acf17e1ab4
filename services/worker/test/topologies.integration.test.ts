import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { toInboundJob, type RedisTopology } from '@wxrelay/shared';
import { createRedisConnection, isCluster, type RedisClient } from '@wxrelay/shared/redis';
import { createInboundProducer, turnKeys, type InboundProducer } from '@wxrelay/shared/queue';
import { startRedisCluster, startRedisSentinel, waitFor, type TestRedisCluster, type TestRedisSentinel } from '@wxrelay/testkit';
import { startFakeWechatApi, type FakeWechatApi } from '@wxrelay/simulator';
import { ledgerKeys } from '../src/delivery/ledger.js';
import { createWorkerMetrics } from '../src/metrics.js';
import type { JobResult } from '../src/pipeline/processor.js';
import { buildWorker, type RunningWorker } from '../src/worker.js';
import { captureLogger, settled, textMessage, workerConfig } from './support.js';

/**
 * A worker end to end on the other Redis topologies, real processes throughout: the gateway's own
 * producer (`createInboundProducer`, its one-command Lua batch) puts messages on the queue of a
 * 3-master Redis Cluster or of a Sentinel-watched master, and a worker built as main.ts builds it
 * answers them through the fake WeChat API: turns, the backlog answered together (markers), the
 * quota ledger, the token lock, progress writes — every script the worker runs, each of which
 * Redis Cluster refuses when its keys span slots.
 */

const APP_ID = 'wxtopologyapp01';
const APP_SECRET = 'topology-app-secret';

let wechat: FakeWechatApi;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  wechat = await startFakeWechatApi({ appId: APP_ID, appSecret: APP_SECRET });
});
afterAll(async () => {
  await wechat.close();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  wechat.reset();
});

const user = (label: string) => `o${label}${randomBytes(6).toString('hex')}`;

/** The gateway's producer on `topology` (its fail-fast connection). */
function gatewayProducer(topology: RedisTopology, prefix: string): InboundProducer & { readonly redis: RedisClient } {
  const redis = createRedisConnection(topology, 'gateway');
  redis.on('error', () => undefined);
  const producer = createInboundProducer({ redis, prefix, timeoutMs: 2_000 });
  producer.queue.on('error', () => undefined);
  cleanups.push(async () => {
    await producer.close().catch(() => undefined);
    redis.disconnect();
  });
  return Object.assign(producer, { redis });
}

/** Enqueues a text message as the gateway does; retries while Redis cannot take it (a failover). */
async function enqueueText(producer: InboundProducer, openid: string, content: string): Promise<string> {
  wechat.userInteracted(openid, 'message');
  const job = toInboundJob(textMessage(openid, content), 'plain', Date.now());
  await waitFor(async () => producer.enqueue(job.jobId, job.payload).then(() => true, () => false), 30_000, `Redis to take ${job.jobId}`);
  return job.jobId;
}

async function startWorker(env: Record<string, string>, prefix: string): Promise<{ worker: RunningWorker; appId: string; logs: ReturnType<typeof captureLogger> }> {
  const appId = `app-${randomBytes(4).toString('hex')}`;
  const logs = captureLogger('info');
  const config = workerConfig({
    WECHAT_APP_ID: APP_ID,
    WECHAT_APP_SECRET: APP_SECRET,
    WECHAT_API_BASE_URL: wechat.url,
    REDIS_URL: 'redis://127.0.0.1:1', // set, as compose sets it, and not used
    QUEUE_PREFIX: prefix,
    WORKER_CONCURRENCY: '10',
    WORKER_LOCK_DURATION_MS: '5000',
    WORKER_STALLED_INTERVAL_MS: '5000',
    WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
    ...env,
  });
  const worker = await buildWorker(config, { log: logs.log, metrics: createWorkerMetrics({ defaultMetrics: false }), stateAppId: appId, typingIntervalMs: 200, turnRetryDelayMs: 50 });
  cleanups.push(() => worker.close());
  return { worker, appId, logs };
}

const textsTo = (openid: string): string[] =>
  wechat.deliveries.filter((d) => d.touser === openid).map((d) => String((d.body as { text?: { content?: string } }).text?.content ?? ''));

describe('Redis Cluster (3 masters, QUEUE_PREFIX with a hash tag)', () => {
  let cluster: TestRedisCluster;
  let reader: RedisClient;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    reader = createRedisConnection({ kind: 'cluster', nodes: cluster.nodes, tls: false }, 'worker');
  });
  afterAll(async () => {
    reader?.disconnect();
    await cluster?.close();
  });

  it("answers the gateway's jobs: single messages, and one user's backlog together", async () => {
    const prefix = `{wk-${randomBytes(4).toString('hex')}}`;
    const producer = gatewayProducer({ kind: 'cluster', nodes: cluster.nodes, tls: false }, prefix);
    expect(producer.via).toBe('script');
    // One user's backlog, queued before any worker runs, and single messages of other users.
    const backlogUser = user('b');
    const backlog = [await enqueueText(producer, backlogUser, 'm1'), await enqueueText(producer, backlogUser, 'm2'), await enqueueText(producer, backlogUser, 'm3')];
    const singles: { openid: string; jobId: string }[] = [];
    for (let i = 0; i < 6; i++) {
      const openid = user(`s${i}`);
      singles.push({ openid, jobId: await enqueueText(producer, openid, `hello ${openid}`) });
    }

    const { worker, appId } = await startWorker(cluster.env, prefix);
    expect(isCluster(worker.redis)).toBe(true);
    worker.start();

    const results = await Promise.all([...backlog, ...singles.map((s) => s.jobId)].map((id) => settled(producer.queue, id)));
    expect(results.map((r) => r.state)).toEqual(results.map(() => 'completed'));
    for (const s of singles) expect(textsTo(s.openid).join('\n')).toContain(`hello ${s.openid}`);
    // The backlog: the first job answered all three in one send (turns, followers, markers).
    const backlogTexts = textsTo(backlogUser);
    expect(backlogTexts).toHaveLength(1);
    for (const m of ['m1', 'm2', 'm3']) expect(backlogTexts[0]).toContain(m);
    expect((results[1]!.job.returnvalue as JobResult)).toEqual({ outcome: 'answered-together', answeredBy: backlog[0] });

    // The ledger's keys carry the queue's tag, as the turn lists do: one script reserves the quota
    // and saves the job's planned progress.
    const tag = prefix.slice(1, -1);
    const ledger = ledgerKeys(appId, backlogUser, tag);
    expect(ledger.window).toBe(`wx:cs-window:{${tag}}:${appId}:${backlogUser}`);
    expect(await reader.exists(ledger.window, ledger.sends)).toBe(2);
    const keys = turnKeys(appId, `${prefix}:wx-inbound:`);
    expect(keys.turnsPrefix).toBe(`wx:turns:${prefix}:${appId}:`);
    expect(await reader.exists(keys.cursorKey)).toBe(1);

    // Markers set together (MULTI) and taken back (the unmark script), several keys per call.
    await worker.turns.markAnswered('absorber', ['j1', 'j2', 'j3']);
    expect(await reader.exists(...['j1', 'j2', 'j3'].map((j) => keys.markerPrefix + j))).toBe(3);
    await worker.turns.clearAnswered('absorber', ['j1', 'j2', 'j3']);
    expect(await reader.exists(...['j1', 'j2', 'j3'].map((j) => keys.markerPrefix + j))).toBe(0);

    expect((await worker.health()).ok).toBe(true);
  });
});

describe('Sentinel (master, replica, 3 sentinels)', () => {
  let sentinel: TestRedisSentinel;
  beforeAll(async () => {
    sentinel = await startRedisSentinel();
  });
  afterAll(async () => {
    await sentinel?.close();
  });

  it('answers through the master the sentinels name, and again after the master is SIGKILLed and they fail over', async () => {
    const prefix = `wk-${randomBytes(4).toString('hex')}`;
    const topology: RedisTopology = { kind: 'sentinel', sentinels: sentinel.sentinels, name: sentinel.name, tls: false };
    const producer = gatewayProducer(topology, prefix);
    const { worker, logs } = await startWorker(sentinel.env, prefix);
    worker.start();

    const before = user('f');
    const first = await enqueueText(producer, before, 'before the failover');
    expect((await settled(producer.queue, first)).state).toBe('completed');
    expect(textsTo(before).join('\n')).toContain('before the failover');

    // What was written is on the replica too before the kill (replication is asynchronous).
    await producer.redis.call('WAIT', '1', '2000');
    const oldMaster = await sentinel.killMaster();
    await sentinel.waitForFailover(oldMaster);

    // The worker rides it out by itself: a message queued on the new master is answered.
    const after = user('a');
    const second = await enqueueText(producer, after, 'after the failover');
    expect((await settled(producer.queue, second)).state).toBe('completed');
    expect(textsTo(after).join('\n')).toContain('after the failover');
    await waitFor(async () => (await worker.health()).ok, 15_000, 'the worker to report healthy');
    expect(logs.lines().some((l) => l.msg === 'redis topology' && String(l.redis).includes(`sentinel master "${sentinel.name}"`))).toBe(true);
  });
});

import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { toInboundJob } from '@wxrelay/shared';
import { answerKeys, createAnswerStore, createInboundProducer, createShardedProducer, queueLayouts, type InboundProducer } from '@wxrelay/shared/queue';
import { startRedis, waitFor, type TestRedis } from '@wxrelay/testkit';
import { startFakeWechatApi, type FakeWechatApi } from '@wxrelay/simulator';
import { runCli, type QueueReport } from '../src/cli/run.js';
import { createWorkerMetrics } from '../src/metrics.js';
import { buildWorker, type RunningWorker } from '../src/worker.js';
import { captureLogger, settled, textMessage, workerConfig } from './support.js';

/**
 * A worker while QUEUE_SHARDS changes (QUEUE_SHARDS=3, QUEUE_SHARDS_ALSO=1) against a real Redis:
 * one user's messages sitting in both layouts at once are answered in the order they were queued,
 * and a pending passive answer left in the old layout's inbox is what the user's next message (in
 * the new layout) fetches.
 */

const APP_ID = 'wxshardchange01';
const APP_SECRET = 'shard-change-secret';

let redis: TestRedis;
let conn: Redis;
let wechat: FakeWechatApi;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  redis = await startRedis();
  conn = new Redis(redis.url);
  wechat = await startFakeWechatApi({ appId: APP_ID, appSecret: APP_SECRET });
});
afterAll(async () => {
  conn.disconnect();
  await wechat.close();
  await redis.close();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  wechat.reset();
});

async function startWorker(prefix: string, env: Record<string, string> = {}): Promise<RunningWorker> {
  const config = workerConfig({
    WECHAT_APP_ID: APP_ID,
    WECHAT_APP_SECRET: APP_SECRET,
    WECHAT_API_BASE_URL: wechat.url,
    REDIS_URL: redis.url,
    QUEUE_PREFIX: prefix,
    QUEUE_SHARDS: '3',
    QUEUE_SHARDS_ALSO: '1',
    WORKER_CONCURRENCY: '12',
    ...env,
  });
  const worker = await buildWorker(config, { log: captureLogger('info').log, metrics: createWorkerMetrics({ defaultMetrics: false }), stateAppId: `app-${randomBytes(4).toString('hex')}`, typingIntervalMs: 200, turnRetryDelayMs: 50 });
  cleanups.push(() => worker.close());
  return worker;
}

function oldLayoutProducer(prefix: string): InboundProducer {
  const producer = createInboundProducer({ redis: conn, prefix, timeoutMs: 2_000 });
  cleanups.push(() => producer.close());
  return producer;
}

function newLayoutProducer(prefix: string) {
  const producer = createShardedProducer({ redis: conn, prefix, shards: { count: 3, also: 1 }, timeoutMs: 2_000 });
  cleanups.push(() => producer.close());
  return producer;
}

/** `pnpm wxrelay …` in this process, with the workers' queue settings. */
async function cliOut(prefix: string, args: readonly string[]): Promise<{ code: number; stdout: string }> {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  const code = await runCli(args, { env: { REDIS_URL: redis.url, QUEUE_PREFIX: prefix, QUEUE_SHARDS: '3', QUEUE_SHARDS_ALSO: '1' }, stdout, stderr: new PassThrough(), stdin: new PassThrough() });
  return { code, stdout: out };
}

const said = (openid: string): string[] =>
  wechat.deliveries.filter((d) => d.touser === openid).flatMap((d) => [...String((d.body as { text?: { content?: string } }).text?.content ?? '').matchAll(/你说：(\S+)/g)].map((m) => m[1]!));

describe('a worker consuming both layouts (QUEUE_SHARDS=3, QUEUE_SHARDS_ALSO=1)', () => {
  it('consumes all four queues, and answers one user whose messages alternate between the layouts in the order they were queued', async () => {
    const prefix = redis.uniquePrefix('sc');
    const old = oldLayoutProducer(prefix);
    const moved = newLayoutProducer(prefix);
    const openid = `oALT${randomBytes(6).toString('hex')}`;
    const ids: { jobId: string; layout: 'old' | 'new' }[] = [];
    // Five: none can be answered together with the next (it is in the other layout), and the user's
    // window allows five messages after their latest.
    for (let i = 1; i <= 5; i++) {
      wechat.userInteracted(openid, 'message');
      const job = toInboundJob({ ...textMessage(openid, `m${i}`), createTime: Math.floor(Date.now() / 1000) + 2 }, 'plain', Date.now());
      // Gateways of both settings during a rolling restart: the user's messages alternate.
      if (i % 2 === 1) expect(await old.enqueue(job.jobId, job.payload)).toBe(false);
      else expect((await moved.place(job.jobId, job.payload)).held).toBe(false);
      ids.push({ jobId: job.jobId, layout: i % 2 === 1 ? 'old' : 'new' });
      // Distinct enqueue times (BullMQ's timestamp is to the ms).
      await new Promise((r) => setTimeout(r, 3));
    }
    // `wxrelay queues`: the old queue is not drained yet.
    const report = async (): Promise<QueueReport[]> => JSON.parse((await cliOut(prefix, ['queues', '--json'])).stdout) as QueueReport[];
    const before = await report();
    expect(before.map((r) => [r.queue, r.layout])).toEqual(queueLayouts(prefix, 3, 1).all.map((q) => [q.name, q.shards === 3 ? 'current' : 'also']));
    expect(before.find((r) => r.layout === 'also')).toMatchObject({ queue: 'wx-inbound', waiting: 3, drained: false, node: null });
    expect(before.filter((r) => r.layout === 'current').reduce((n, r) => n + r.waiting, 0)).toBe(2);

    const worker = await startWorker(prefix);
    expect(worker.queues.map((q) => q.name)).toEqual(queueLayouts(prefix, 3, 1).all.map((q) => q.name));
    expect(worker.workers).toHaveLength(4);
    worker.start();
    for (const { jobId, layout } of ids) {
      const { state, job } = await settled(layout === 'old' ? old.queue : moved.queueOf(openid), jobId);
      expect([state, job.failedReason]).toEqual(['completed', undefined]);
    }
    expect(said(openid)).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    await waitFor(async () => (await report()).every((r) => r.drained), 5_000, 'every queue drained');
    const table = (await cliOut(prefix, ['queues'])).stdout;
    expect(table).toMatch(/^QUEUE\s+LAYOUT\s+SLOT\s+NODE\s+WAITING\s+ACTIVE\s+DELAYED\s+FAILED\s+INBOX\s+DRAINED\n/);
    expect(table.trim().split('\n')).toHaveLength(5);
  });

  it("passive: the user's next message, in the new layout, fetches the answer waiting in the old layout's inbox", async () => {
    const prefix = redis.uniquePrefix('sc');
    const layouts = queueLayouts(prefix, 3, 1);
    const oldQueue = layouts.also!.queues[0]!;
    const openid = `oINB${randomBytes(6).toString('hex')}`;
    const newQueue = layouts.current.shardFor(openid);
    const times = { answerTtlMs: 60_000, inboxTtlMs: 60_000 };
    const oldStore = createAnswerStore(conn, answerKeys(oldQueue.jobPrefix), times);
    const newStore = createAnswerStore(conn, answerKeys(newQueue.jobPrefix), times);
    const page = JSON.stringify({ kind: 'text', content: 'the answer that waited' });
    // WeChat's last attempt of an earlier message came before its answer: it waits in the inbox.
    expect((await oldStore.claim('last', 'msg-earlier', openid, 3, Date.now())).kind).toBe('inbox');
    expect(await oldStore.record('msg-earlier', [page])).toBe('recorded');
    expect(await oldStore.pending()).toBe(1);

    const worker = await startWorker(prefix, { REPLY_MODE: 'passive' });
    worker.start();
    const moved = newLayoutProducer(prefix);
    const job = toInboundJob(textMessage(openid, 'and?'), 'plain', Date.now());
    expect(await moved.place(job.jobId, job.payload)).toEqual({ held: false, queue: newQueue });
    expect((await settled(moved.queueOf(openid), job.jobId)).state).toBe('completed');

    // The gateway holding the new message claims it from the new queue's store: the old answer.
    expect(await newStore.claim('take', job.jobId, openid, 1, Date.now())).toEqual({ kind: 'answer', attempt: 1, page, source: 'inbox', pages: 1 });
    expect(await oldStore.pending()).toBe(0);
    expect(await conn.llen(`${answerKeys(oldQueue.jobPrefix).inboxPrefix}${openid}`)).toBe(0);
  });
});

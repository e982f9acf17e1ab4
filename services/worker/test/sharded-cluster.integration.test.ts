import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashTagOf, toInboundJob } from '@wxrelay/shared';
import { createRedisConnection, type RedisClient } from '@wxrelay/shared/redis';
import { createShardedProducer, keySlot, shardIndexOf, turnKeys, type QueueShard, type ShardedProducer } from '@wxrelay/shared/queue';
import { buildIfStale, spawnService, startRedisCluster, waitFor, type SpawnedService, type TestRedisCluster } from '@wxrelay/testkit';
import { startFakeLlm, startFakeWechatApi, type FakeLlm, type FakeWechatApi } from '@wxrelay/simulator';
import { runCli, type QueueReport } from '../src/cli/run.js';
import { ledgerKeys } from '../src/delivery/ledger.js';
import { createWorkerMetrics } from '../src/metrics.js';
import type { JobResult } from '../src/pipeline/processor.js';
import { buildWorker, type RunningWorker } from '../src/worker.js';
import { captureLogger, settled, textMessage, workerConfig } from './support.js';

/**
 * The worker on a sharded queue (QUEUE_SHARDS=3) in a real 3-master Redis Cluster: the gateway's
 * own sharded producer routes each message to its user's shard, each shard lives on its own master,
 * and workers built as main.ts builds them (and, for the crash, `node dist/main.js` processes) take
 * from all three: per-user order, a backlog answered together, the token shared, the quota ledger,
 * a worker SIGKILLed mid-job.
 */

const APP_ID = 'wxshardedapp01';
const APP_SECRET = 'sharded-app-secret';

let cluster: TestRedisCluster;
let reader: RedisClient;
let wechat: FakeWechatApi;
let llm: FakeLlm;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  buildIfStale(['services/worker']);
  [cluster, wechat, llm] = await Promise.all([startRedisCluster(), startFakeWechatApi({ appId: APP_ID, appSecret: APP_SECRET }), startFakeLlm({})]);
  reader = createRedisConnection({ kind: 'cluster', nodes: cluster.nodes, tls: false }, 'worker');
}, 60_000);
afterAll(async () => {
  reader?.disconnect();
  await Promise.all([wechat?.close(), llm?.close()]);
  await cluster?.close();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  wechat.reset();
  llm.reset();
  llm.setDelay(0);
});

const user = (label: string) => `o${label}${randomBytes(6).toString('hex')}`;
const topology = () => ({ kind: 'cluster' as const, nodes: cluster.nodes, tls: false });

/** The gateway's sharded producer on its fail-fast connection, once that is ready. */
async function shardedProducer(prefix: string): Promise<ShardedProducer> {
  const redis = createRedisConnection(topology(), 'gateway');
  redis.on('error', () => undefined);
  await waitFor(() => redis.status === 'ready', 20_000, 'the gateway connection');
  const producer = createShardedProducer({ redis, prefix, shards: { count: 3 }, timeoutMs: 2_000 });
  for (const p of producer.producers) p.queue.on('error', () => undefined);
  cleanups.push(async () => {
    await producer.close().catch(() => undefined);
    redis.disconnect();
  });
  return producer;
}

async function say(producer: ShardedProducer, openid: string, content: string): Promise<string> {
  wechat.userInteracted(openid, 'message');
  // A CreateTime ahead of the clock: the ledger takes the gateway's receivedAt (to the ms), so a
  // message written within the second of a reply does not have that reply charged to it.
  const job = toInboundJob({ ...textMessage(openid, content), createTime: Math.floor(Date.now() / 1000) + 2 }, 'plain', Date.now());
  expect((await producer.place(job.jobId, job.payload)).held).toBe(false);
  return job.jobId;
}

function env(prefix: string): Record<string, string> {
  return {
    ...cluster.env,
    WECHAT_APP_ID: APP_ID,
    WECHAT_APP_SECRET: APP_SECRET,
    WECHAT_API_BASE_URL: wechat.url,
    REDIS_URL: 'redis://127.0.0.1:1', // set, as compose sets it, and not used
    QUEUE_PREFIX: prefix,
    QUEUE_SHARDS: '3',
    WORKER_CONCURRENCY: '12',
    WORKER_LOCK_DURATION_MS: '2000',
    WORKER_STALLED_INTERVAL_MS: '1000',
    WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
  };
}

async function startWorker(prefix: string, appId: string, extra: Record<string, string> = {}): Promise<RunningWorker> {
  const worker = await buildWorker(workerConfig({ ...env(prefix), ...extra }), { log: captureLogger('info').log, metrics: createWorkerMetrics({ defaultMetrics: false }), stateAppId: appId, typingIntervalMs: 200, turnRetryDelayMs: 50 });
  cleanups.push(() => worker.close());
  return worker;
}

const textsTo = (openid: string): string[] => wechat.deliveries.filter((d) => d.touser === openid).map((d) => String((d.body as { text?: { content?: string } }).text?.content ?? ''));
/** What the echo answered, in the order WeChat received it: `你说：<text>` of every part. */
const saidTo = (openid: string): string[] => textsTo(openid).flatMap((t) => [...t.matchAll(/你说：(\S+)/g)].map((m) => m[1]!));

/** The port of the master that serves `key`'s slot, as the cluster itself says. */
async function ownerOf(key: string): Promise<number> {
  const slot = keySlot(key);
  expect(Number(await reader.call('CLUSTER', 'KEYSLOT', key))).toBe(slot);
  const ranges = (await reader.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, ...unknown[]], ...unknown[]][];
  return Number(ranges.find(([from, to]) => slot >= from && slot <= to)![2][1]);
}

/** Asks that very node (not the cluster client) whether it holds `key`. */
async function nodeHolds(port: number, key: string): Promise<boolean> {
  const node = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
  node.on('error', () => undefined);
  try {
    await node.connect();
    return (await node.exists(key)) === 1;
  } finally {
    node.disconnect();
  }
}

describe('QUEUE_SHARDS=3 on a 3-master Redis Cluster', () => {
  it('spreads the queue over the three masters and answers every user: order, a backlog together, one token, the quota ledger', async () => {
    const prefix = `{wk-${randomBytes(4).toString('hex')}}`;
    const producer = await shardedProducer(prefix);
    const shards = producer.layouts.current.queues;
    shards.forEach((q, i) => expect(q.prefix).toMatch(new RegExp(`^\\{wk-[0-9a-f]{8}-${i}of3(-\\d+)?\\}$`)));

    // Before any worker runs: a backlog of one user, single messages of users on every shard.
    const backlogUser = user('b');
    const backlog = [await say(producer, backlogUser, 'b1'), await say(producer, backlogUser, 'b2'), await say(producer, backlogUser, 'b3')];
    const singles: { openid: string; jobId: string; shard: QueueShard; content: string }[] = [];
    for (let i = 0; singles.length < 9; i++) {
      const openid = user(`s${i}`);
      const shard = producer.layouts.current.shardFor(openid);
      // Three users per shard.
      if (singles.filter((s) => s.shard === shard).length >= 3) continue;
      singles.push({ openid, jobId: await say(producer, openid, `hello-${i}`), shard, content: `hello-${i}` });
    }
    // A long message: its echo is more 2048-byte parts than the user's window allows (5).
    const quotaUser = user('q');
    const long = Array.from({ length: 2_000 }, (_, i) => `w${i}`).join('-');
    const longJob = await say(producer, quotaUser, long);

    // Two workers sharing one appid: one token between them.
    const appId = `app-${randomBytes(4).toString('hex')}`;
    const workers = [await startWorker(prefix, appId), await startWorker(prefix, appId)];
    for (const w of workers) {
      expect(w.queues.map((q) => q.prefix)).toEqual(shards.map((q) => q.prefix));
      expect(w.workers).toHaveLength(3);
      w.start();
    }

    const all = [...backlog.map((jobId) => ({ jobId, openid: backlogUser })), ...singles, { jobId: longJob, openid: quotaUser }];
    const results = await Promise.all(all.map((j) => settled(producer.queueOf(j.openid), j.jobId)));
    expect(results.map((r) => r.state)).toEqual(results.map(() => 'completed'));

    // Every user answered, once.
    for (const s of singles) expect(saidTo(s.openid), s.openid).toEqual([s.content]);
    // The backlog: one send, in order (turns, followers, markers in the user's shard).
    expect(textsTo(backlogUser)).toHaveLength(1);
    expect(saidTo(backlogUser)).toEqual(['b1', 'b2', 'b3']);
    expect((results[1]!.job.returnvalue as JobResult)).toEqual({ outcome: 'answered-together', answeredBy: backlog[0] });
    // The quota: five messages, the last saying it was cut (the ledger's reserve script on the user's keys).
    expect(textsTo(quotaUser)).toHaveLength(5);
    expect((results.at(-1)!.job.returnvalue as JobResult).cut).toBe(true);
    // The user's ledger lives in their shard's slot (the queue's tag), beside their turn list.
    const shard = producer.layouts.current.queues[shardIndexOf(quotaUser, 3)]!;
    const tag = hashTagOf(shard.prefix)!;
    const ledger = ledgerKeys(appId, quotaUser, tag);
    expect(ledger.window).toBe(`wx:cs-window:{${tag}}:${appId}:${quotaUser}`);
    expect(keySlot(ledger.window)).toBe(keySlot(shard.jobPrefix));
    expect(await reader.zcard(ledger.sends)).toBe(5);
    // One token, fetched once, shared by both workers and all three shards.
    expect(wechat.tokenFetches).toHaveLength(1);

    // The jobs really are on three masters: each shard's keys in its tag's slot, on the node that serves it.
    const owners: number[] = [];
    for (const shard of shards) {
      const completed = `${shard.jobPrefix}completed`;
      const port = await ownerOf(completed);
      owners.push(port);
      expect(await nodeHolds(port, completed), `${completed} on ${port}`).toBe(true);
      const mine = singles.filter((s) => s.shard === shard);
      for (const s of mine) {
        expect(await ownerOf(`${shard.jobPrefix}${s.jobId}`)).toBe(port);
        expect(await nodeHolds(port, `${shard.jobPrefix}${s.jobId}`)).toBe(true);
      }
      // The turn lists and the cursor of the shard carry its tag.
      const keys = turnKeys(appId, shard.jobPrefix);
      expect(keySlot(keys.turnsPrefix + mine[0]!.openid)).toBe(keySlot(shard.prefix));
      expect(await nodeHolds(port, keys.cursorKey)).toBe(true);
    }
    expect(new Set(owners).size).toBe(3);
    expect([...owners].sort()).toEqual(cluster.nodes.map((n) => n.port).sort());
    // `pnpm wxrelay queues` says the same: each shard, its slot and its master, drained.
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    expect(await runCli(['queues', '--json'], { env: { ...cluster.env, QUEUE_PREFIX: prefix, QUEUE_SHARDS: '3' }, stdout, stderr: new PassThrough(), stdin: new PassThrough() })).toBe(0);
    const report = JSON.parse(out) as QueueReport[];
    expect(report.map((r) => [r.queue, r.slot, r.node, r.drained])).toEqual(shards.map((s, i) => [s.name, keySlot(s.prefix), `127.0.0.1:${owners[i]}`, true]));
    for (const w of workers) expect((await w.health()).ok).toBe(true);
  }, 60_000);

  it("keeps one user's order while the workers run, whichever worker and whatever the concurrency", async () => {
    const prefix = `{wk-${randomBytes(4).toString('hex')}}`;
    const producer = await shardedProducer(prefix);
    const appId = `app-${randomBytes(4).toString('hex')}`;
    for (const w of [await startWorker(prefix, appId), await startWorker(prefix, appId)]) w.start();
    const users = [user('x'), user('y'), user('z')];
    const sent = new Map(users.map((u) => [u, [] as string[]]));
    const ids: { openid: string; jobId: string }[] = [];
    for (let i = 0; i < 8; i++) {
      for (const openid of users) {
        const content = `m${i}`;
        sent.get(openid)!.push(content);
        ids.push({ openid, jobId: await say(producer, openid, content) });
      }
    }
    for (const j of ids) expect((await settled(producer.queueOf(j.openid), j.jobId)).state).toBe('completed');
    for (const openid of users) expect(saidTo(openid)).toEqual(sent.get(openid));
  }, 60_000);

  it('a worker process SIGKILLed mid-job: another one delivers the answer, once', async () => {
    const prefix = `{wk-${randomBytes(4).toString('hex')}}`;
    const producer = await shardedProducer(prefix);
    const processEnv = { ...env(prefix), LLM_BASE_URL: llm.url, METRICS_PORT: '0', LOG_LEVEL: 'info' };
    const procs: SpawnedService[] = [];
    cleanups.push(async () => {
      for (const p of procs) await p.stop('SIGKILL');
    });
    llm.setDelay(3_000);
    const first = spawnService('services/worker/dist/main.js', processEnv);
    procs.push(first);
    await first.waitForLine(/worker started/, 30_000);
    // One user per shard, so every shard has a job in flight when the worker dies.
    const victims: { openid: string; jobId: string }[] = [];
    for (let i = 0; victims.length < 3; i++) {
      const openid = user(`k${i}`);
      if (victims.some((v) => producer.layouts.current.shardFor(v.openid) === producer.layouts.current.shardFor(openid))) continue;
      victims.push({ openid, jobId: await say(producer, openid, `crash-${i}`) });
    }
    await waitFor(() => llm.requests.length >= 3, 30_000, 'the three LLM calls');
    await first.stop('SIGKILL');
    llm.setDelay(0);
    const second = spawnService('services/worker/dist/main.js', processEnv);
    procs.push(second);
    for (const v of victims) expect((await settled(producer.queueOf(v.openid), v.jobId, 60_000)).state).toBe('completed');
    for (const v of victims) expect(textsTo(v.openid)).toHaveLength(1);
    expect(wechat.deliveries).toHaveLength(3);
  }, 80_000);
});

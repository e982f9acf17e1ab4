import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGatewayConfig, startMetricsServer, type GatewayConfig, type MetricsServer } from '@wxrelay/shared';
import { createRedisConnection, type RedisClient } from '@wxrelay/shared/redis';
import { answerKeys, createAnswerStore, keySlot, type QueueShard } from '@wxrelay/shared/queue';
import { startRedisCluster, waitFor, type TestRedisCluster } from '@wxrelay/testkit';
import type { GatewayApp } from '../src/app.js';
import { DASHBOARD_PATH, dashboardRoutes } from '../src/dashboard.js';
import { buildTestApp, captureLogs, dedupHits, gatewayEnv, postPlain, userMessage } from './support.js';

/**
 * The gateway on a sharded queue (QUEUE_SHARDS=3) in a real 3-master Redis Cluster: every callback
 * goes to its user's shard, each shard sits on its own master (asked of the node itself), WeChat's
 * retries meet their message on its shard, passive answers are claimed from the shard that holds the
 * message (one subscriber for the three channels), the gauges and Bull Board show every shard, and
 * a master's death takes down only the users of its shard. Runs on both producer paths.
 */

function configFor(env: Record<string, string>): GatewayConfig {
  return loadGatewayConfig(gatewayEnv('redis://127.0.0.1:1', { ENQUEUE_TIMEOUT_MS: '1000', QUEUE_SHARDS: '3', ...env }));
}

/** The master serving `key`'s slot, per CLUSTER SLOTS. */
async function ownerOf(reader: RedisClient, key: string): Promise<number> {
  const slot = Number(await reader.call('CLUSTER', 'KEYSLOT', key));
  expect(slot).toBe(keySlot(key));
  const ranges = (await reader.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, ...unknown[]], ...unknown[]][];
  return Number(ranges.find(([from, to]) => slot >= from && slot <= to)![2][1]);
}

/** That node's own answer (a plain connection, no cluster redirection) to EXISTS. */
async function nodeHolds(port: number, ...keys: string[]): Promise<number> {
  const node = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0 });
  node.on('error', () => undefined);
  try {
    await node.connect();
    return await node.exists(...keys);
  } finally {
    node.disconnect();
  }
}

describe('QUEUE_SHARDS=3 on a 3-master Redis Cluster', () => {
  let cluster: TestRedisCluster;
  let app: GatewayApp;
  let passive: GatewayApp;
  let reader: RedisClient;
  let shards: readonly QueueShard[];
  const prefix = `{gs-${randomBytes(4).toString('hex')}}`;

  beforeAll(async () => {
    cluster = await startRedisCluster();
    const config = configFor({ ...cluster.env, QUEUE_PREFIX: prefix });
    app = await buildTestApp(config, { logger: captureLogs().logger, queuePrefix: prefix });
    passive = await buildTestApp(configFor({ ...cluster.env, QUEUE_PREFIX: prefix, REPLY_MODE: 'passive', PASSIVE_HOLD_MS: '4000' }), { logger: captureLogs().logger, queuePrefix: prefix });
    reader = createRedisConnection(config.redis, 'worker');
    shards = app.queueLayouts.current.queues;
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    await passive?.close();
    reader?.disconnect();
    await cluster?.close();
  });

  it("puts every callback on its user's shard, and the three shards are on the three masters", async () => {
    expect(shards).toHaveLength(3);
    expect(app.inboundQueues.map((q) => q.shard.name)).toEqual(shards.map((s) => `${s.prefix}:wx-inbound`));
    const messages = Array.from({ length: 30 }, () => userMessage());
    const answers = await Promise.all(messages.map((m) => postPlain(app, m.xml)));
    for (const res of answers) expect([res.statusCode, res.body]).toEqual([200, 'success']);

    const owners: number[] = [];
    for (const shard of shards) {
      const mine = messages.filter((m) => app.queueLayouts.current.shardFor(m.openid) === shard);
      expect(mine.length, `users on ${shard.name}`).toBeGreaterThan(0);
      const wait = `${shard.jobPrefix}wait`;
      const port = await ownerOf(reader, wait);
      owners.push(port);
      // The node itself holds the shard's wait list, its jobs and their dedup keys; nobody else's.
      expect(await reader.llen(wait)).toBe(mine.length);
      expect(await nodeHolds(port, wait)).toBe(1);
      for (const m of mine) {
        expect(await ownerOf(reader, `${shard.jobPrefix}${m.jobId}`)).toBe(port);
        expect(await nodeHolds(port, `${shard.jobPrefix}${m.jobId}`, `${shard.jobPrefix}de:${m.jobId}`)).toBe(2);
      }
    }
    expect([...owners].sort()).toEqual(cluster.nodes.map((n) => n.port).sort());
  });

  it("answers WeChat's retries of a message as duplicates, with no second job on any shard", async () => {
    const m = userMessage();
    expect((await postPlain(app, m.xml)).body).toBe('success');
    const before = await dedupHits(app);
    for (let i = 0; i < 3; i++) expect((await postPlain(app, m.xml)).body).toBe('success');
    expect(await dedupHits(app)).toBe(before + 3);
    const holders = await Promise.all(shards.map((s) => reader.exists(`${s.jobPrefix}${m.jobId}`)));
    expect(holders.reduce((a, b) => a + b, 0)).toBe(1);
    expect(holders[shards.indexOf(app.queueLayouts.current.shardFor(m.openid))]).toBe(1);
  });

  it('exports the backlog gauges per shard and shows every shard on Bull Board', async () => {
    const text = await app.metrics.registry.metrics();
    for (const shard of shards) {
      const waiting = await reader.llen(`${shard.jobPrefix}wait`);
      expect(text).toContain(`wxrelay_queue_jobs{queue="${shard.name}",state="waiting"} ${waiting}`);
      expect(text).toContain(`wxrelay_queue_oldest_waiting_seconds{queue="${shard.name}"}`);
    }
    const ADMIN = 'sharded-admin';
    const server: MetricsServer = await startMetricsServer({
      host: '127.0.0.1',
      port: 0,
      render: () => app.metrics.registry.metrics(),
      contentType: app.metrics.registry.contentType,
      routes: [dashboardRoutes({ queue: app.inboundQueues, token: ADMIN, actions: false, log: captureLogs().logger })],
    });
    try {
      const res = await fetch(`${server.origin}${DASHBOARD_PATH}/api/queues`, { headers: { authorization: `Bearer ${ADMIN}` } });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { queues: { name: string; counts: { waiting: number } }[] };
      expect(body.queues.map((q) => q.name).sort()).toEqual(shards.map((s) => s.name).sort());
      for (const q of body.queues) expect(q.counts.waiting).toBe(await reader.llen(`${shards.find((s) => s.name === q.name)!.jobPrefix}wait`));
    } finally {
      await server.close();
    }
  });

  it("passive: a held request gets its answer from its message's shard (one subscriber, three channels)", async () => {
    const byShard = new Map<QueueShard, { xml: string; jobId: string; openid: string }>();
    while (byShard.size < 3) {
      const m = userMessage();
      const shard = passive.queueLayouts.current.shardFor(m.openid);
      if (!byShard.has(shard)) byShard.set(shard, m);
    }
    // What a worker would do: record each answer in the store of the shard its job is on.
    const workerSide = createRedisConnection(configFor({ ...cluster.env, QUEUE_PREFIX: prefix }).redis, 'worker');
    try {
      const held = [...byShard].map(async ([shard, m]) => {
        const answered = postPlain(passive, m.xml);
        await waitFor(async () => (await reader.exists(`${shard.jobPrefix}${m.jobId}`)) === 1, 5_000, `${m.jobId} queued`);
        const store = createAnswerStore(workerSide, answerKeys(shard.jobPrefix), { answerTtlMs: 60_000, inboxTtlMs: 60_000 });
        expect(await store.record(m.jobId, [JSON.stringify({ kind: 'text', content: `from ${shard.name}` })])).toBe('recorded');
        const res = await answered;
        expect(res.statusCode).toBe(200);
        expect(res.headers['x-wxrelay-reply']).toBe('answer');
        expect(res.body).toContain(`from ${shard.name}`);
      });
      await Promise.all(held);
    } finally {
      workerSide.disconnect();
    }
  });

  it("a master dies: only its shard's users get 503 (never success); the other shards' users are still queued", async () => {
    const victim = shards[1]!;
    await cluster.killMasterOf(victim.prefix);
    const messages = Array.from({ length: 24 }, () => userMessage());
    const answers = await Promise.all(messages.map((m) => postPlain(app, m.xml)));
    let down = 0;
    messages.forEach((m, i) => {
      const res = answers[i]!;
      if (app.queueLayouts.current.shardFor(m.openid) === victim) {
        down += 1;
        expect(res.statusCode).toBe(503);
        expect(res.body).not.toBe('success');
      } else {
        expect([res.statusCode, res.body]).toEqual([200, 'success']);
      }
    });
    expect(down).toBeGreaterThan(0);
    expect(down).toBeLessThan(messages.length);
  });
});

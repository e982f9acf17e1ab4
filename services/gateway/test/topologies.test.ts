import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterKeyLayoutProblem, isWxError, loadGatewayConfig, type GatewayConfig } from '@wxrelay/shared';
import { createRedisConnection, isCluster, type RedisClient } from '@wxrelay/shared/redis';
import { startRedisCluster, startRedisSentinel, type TestRedisCluster, type TestRedisSentinel } from '@wxrelay/testkit';
import type { GatewayApp } from '../src/app.js';
import { buildTestApp, captureLogs, dedupHits, gatewayEnv, postPlain, userMessage } from './support.js';

/**
 * The gateway on the other Redis topologies, real processes throughout: a 3-master Redis Cluster
 * (QUEUE_PREFIX with a hash tag) and Sentinel (a master, a replica, three sentinels) whose master
 * is SIGKILLed. Runs on both producer paths (the suite's two projects): the one-command Lua batch
 * and the `Queue.addBulk` fallback each have to keep their keys in one slot.
 */

function configFor(env: Record<string, string>): GatewayConfig {
  // REDIS_URL is set (as compose sets it) and ignored: the topology's variables take its place.
  return loadGatewayConfig(gatewayEnv('redis://127.0.0.1:1', { ENQUEUE_TIMEOUT_MS: '1000', ...env }));
}

describe('Redis Cluster', () => {
  let cluster: TestRedisCluster;
  let app: GatewayApp;
  let reader: RedisClient;
  const prefix = `{gw-${randomBytes(4).toString('hex')}}`;

  beforeAll(async () => {
    cluster = await startRedisCluster();
    app = await buildTestApp(configFor({ ...cluster.env, QUEUE_PREFIX: prefix }), { logger: captureLogs().logger, queuePrefix: prefix });
    reader = createRedisConnection(configFor({ ...cluster.env, QUEUE_PREFIX: prefix }).redis, 'worker');
  });
  afterAll(async () => {
    await app?.close();
    reader?.disconnect();
    await cluster?.close();
  });

  it('connects with a Cluster client and answers success for every callback; the jobs are in the cluster', async () => {
    expect(isCluster(app.redis)).toBe(true);
    const messages = Array.from({ length: 24 }, () => userMessage());
    const answers = await Promise.all(messages.map((m) => postPlain(app, m.xml)));
    for (const res of answers) expect([res.statusCode, res.body]).toEqual([200, 'success']);
    for (const m of messages) expect(await app.inboundQueue.getJob(m.jobId), m.jobId).toBeDefined();
    expect(await app.inboundQueue.getWaitingCount()).toBe(messages.length);

    // Every key of the queue sits in the one slot of the prefix's tag, on the node that owns it.
    const slot = Number(await reader.call('CLUSTER', 'KEYSLOT', prefix));
    for (const key of [`${prefix}:wx-inbound:wait`, `${prefix}:wx-inbound:${messages[0]!.jobId}`, `${prefix}:wx-inbound:de:${messages[0]!.jobId}`]) {
      expect(Number(await reader.call('CLUSTER', 'KEYSLOT', key)), key).toBe(slot);
      expect(await reader.exists(key), key).toBe(1);
    }
  });

  it("answers WeChat's retry of a queued message as a duplicate, with no second job", async () => {
    const m = userMessage();
    expect((await postPlain(app, m.xml)).body).toBe('success');
    const before = await dedupHits(app);
    expect((await postPlain(app, m.xml)).body).toBe('success');
    expect(await dedupHits(app)).toBe(before + 1);
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });

  it('fails fast when the master of the queue\'s slot dies: 503, never success', async () => {
    const killed = await cluster.killMasterOf(prefix);
    expect(cluster.nodes.map((n) => n.port)).toContain(killed);
    const answers = await Promise.all(Array.from({ length: 8 }, () => postPlain(app, userMessage().xml)));
    for (const res of answers) {
      expect(res.statusCode).toBe(503);
      expect(res.body).not.toBe('success');
    }
  });

  it('refuses to start on a queue prefix without a hash tag, saying what to set', async () => {
    let thrown: unknown;
    try {
      configFor({ ...cluster.env, QUEUE_PREFIX: 'wx' });
    } catch (err) {
      thrown = err;
    }
    expect(isWxError(thrown, 'WX_ERR_CONFIG')).toBe(true);
    expect(String((thrown as Error).message)).toContain('QUEUE_PREFIX must carry a hash tag in Redis Cluster (REDIS_CLUSTER_NODES is set), e.g. QUEUE_PREFIX={wx}');
    // Built with another prefix than the configuration's (as tests do), the app checks it too.
    await expect(buildTestApp(configFor({ ...cluster.env, QUEUE_PREFIX: prefix }), { queuePrefix: 'gw-untagged' })).rejects.toThrow(/QUEUE_PREFIX must carry a hash tag in Redis Cluster, e\.g\. QUEUE_PREFIX=\{gw-untagged\}/);
    expect(clusterKeyLayoutProblem({ kind: 'single' }, 'wx')).toBeUndefined();
  });
});

describe('Sentinel', () => {
  let sentinel: TestRedisSentinel;
  let app: GatewayApp;

  beforeAll(async () => {
    sentinel = await startRedisSentinel();
    app = await buildTestApp(configFor({ ...sentinel.env }), { logger: captureLogs().logger, queuePrefix: `gw-${randomBytes(4).toString('hex')}` });
  });
  afterAll(async () => {
    await app?.close();
    await sentinel?.close();
  });

  it('finds the master through the sentinels and answers success', async () => {
    expect(isCluster(app.redis)).toBe(false);
    const m = userMessage();
    expect((await postPlain(app, m.xml)).body).toBe('success');
    expect(await app.inboundQueue.getJob(m.jobId)).toBeDefined();
  });

  it('answers 503 while the master is gone and the sentinels fail over — never success for an enqueue that failed — then acks again by itself', async () => {
    // What was acked before is on the replica too (replication is asynchronous: WAIT, not the
    // subject here, makes sure the kill cannot take it along).
    await app.redis.call('WAIT', '1', '2000');
    const oldMaster = await sentinel.killMaster();

    const acked: string[] = [];
    const statuses = new Set<number>();
    let seen503 = false;
    let ackedAfter503 = false;
    const deadline = Date.now() + 40_000;
    while (!ackedAfter503 && Date.now() < deadline) {
      const m = userMessage();
      const res = await postPlain(app, m.xml);
      statuses.add(res.statusCode);
      if (res.statusCode === 503) {
        expect(res.body).not.toBe('success');
        seen503 = true;
      } else {
        expect([res.statusCode, res.body]).toEqual([200, 'success']);
        acked.push(m.jobId);
        if (seen503) ackedAfter503 = true;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen503).toBe(true);
    expect(ackedAfter503).toBe(true);
    expect([...statuses].sort()).toEqual([200, 503]);
    const newMaster = await sentinel.waitForFailover(oldMaster);
    expect(newMaster).not.toBe(oldMaster);

    // Every callback answered success is in the new master: nothing acked was lost.
    for (const jobId of acked) expect(await app.inboundQueue.getJob(jobId), jobId).toBeDefined();
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });
});

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGatewayConfig, type GatewayConfig } from '@wxrelay/shared';
import { createReplicaWaiter } from '@wxrelay/shared/queue';
import { isCluster } from '@wxrelay/shared/redis';
import { startRedisCluster, startRedisSentinel, type TestRedisCluster, type TestRedisSentinel } from '@wxrelay/testkit';
import type { GatewayApp } from '../src/app.js';
import { buildTestApp, captureLogs, dedupHits, gatewayEnv, type CapturedLogs, postPlain, userMessage } from './support.js';

/**
 * REDIS_ACK_REPLICAS: the gateway acks only once that many replicas confirmed the batch (WAIT on the
 * connection that wrote it), else 503. Real Sentinel and Cluster setups from the testkit; a replica
 * is made to lag with `CLIENT PAUSE … ALL` (it stops applying the master's stream). The failover
 * itself, with a worker and the messages lost without the setting, is tests/ack-replicas.test.ts.
 */

function configFor(env: Record<string, string>): GatewayConfig {
  return loadGatewayConfig(gatewayEnv('redis://127.0.0.1:1', { ENQUEUE_TIMEOUT_MS: '600', REDIS_ACK_REPLICAS: '1', ...env }));
}

/** `CLIENT PAUSE ms ALL` on a replica: it reads the master's stream but applies (and acknowledges) none of it. */
async function pause(port: number, ms: number): Promise<void> {
  const c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0 });
  try {
    await c.call('CLIENT', 'PAUSE', String(ms), 'ALL');
  } finally {
    c.disconnect();
  }
}

/** Waits until the node on `port` answers again (its pause is over). */
async function answering(port: number): Promise<void> {
  const c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, commandTimeout: 3_000 });
  try {
    await c.ping();
  } finally {
    c.disconnect();
  }
}

async function counter(app: GatewayApp, name: 'ackReplicaShortfalls'): Promise<number> {
  return (await app.metrics[name].get()).values[0]?.value ?? 0;
}

async function unavailable(app: GatewayApp): Promise<number> {
  return (await app.metrics.callbacks.get()).values.filter((v) => v.labels.outcome === 'unavailable').reduce((sum, v) => sum + v.value, 0);
}

describe('REDIS_ACK_REPLICAS=1 with Sentinel (a master and a replica)', () => {
  let sentinel: TestRedisSentinel;
  let app: GatewayApp;
  let logs: CapturedLogs;
  let replica: Redis;

  beforeAll(async () => {
    sentinel = await startRedisSentinel();
    logs = captureLogs();
    app = await buildTestApp(configFor({ ...sentinel.env }), { logger: logs.logger, queuePrefix: `gw-${randomBytes(4).toString('hex')}` });
    const [port] = await sentinel.replicaPorts();
    if (port === undefined) throw new Error('no replica');
    replica = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    replica?.disconnect();
    await app?.close();
    await sentinel?.close();
  });

  it('says at startup that acks wait for the replica', () => {
    const line = logs.records().find((r) => String(r.msg).startsWith('acks wait for 1 replica(s)'));
    expect(line).toMatchObject({ ackReplicas: 1, budgetMs: 600 });
  });

  it('answers success only once the replica holds the job: it is on the replica the moment the ack arrives', async () => {
    const messages = Array.from({ length: 20 }, () => userMessage());
    const answers = await Promise.all(messages.map((m) => postPlain(app, m.xml)));
    for (const res of answers) expect([res.statusCode, res.body]).toEqual([200, 'success']);
    // Read from the replica at once, without waiting for replication: WAIT already did.
    const key = (jobId: string) => `${app.inboundQueue.toKey('')}${jobId}`;
    const onReplica = await Promise.all(messages.map((m) => replica.exists(key(m.jobId))));
    expect(onReplica).toEqual(messages.map(() => 1));
    expect(await counter(app, 'ackReplicaShortfalls')).toBe(0);
  });

  it('while the replica lags: 503, never success, counted as a shortfall; the retry once it caught up is a duplicate, acked', async () => {
    const m = userMessage();
    const shortBefore = await counter(app, 'ackReplicaShortfalls');
    const unavailableBefore = await unavailable(app);
    const dedupBefore = await dedupHits(app);
    const port = Number(replica.options.port);
    await pause(port, 1_500);
    const refused = await Promise.all([postPlain(app, m.xml), postPlain(app, userMessage().xml), postPlain(app, userMessage().xml)]);
    for (const res of refused) {
      expect(res.statusCode).toBe(503);
      expect(res.body).not.toBe('success');
    }
    expect(await counter(app, 'ackReplicaShortfalls')).toBe(shortBefore + 3);
    expect(await unavailable(app)).toBe(unavailableBefore + 3);
    // The answer and the log line say why: the replica, not Redis taking the job.
    expect(refused[0]?.body).toMatch(/^unavailable: .*replica\(s\)/);
    expect(logs.records().some((r) => r.code === 'WX_ERR_ENQUEUE' && /replica\(s\) (did not confirm|confirmed) the job/.test(String(r.reason)))).toBe(true);

    // The job did land in the master; only the confirmation was missing. WeChat's retry, once the
    // replica has caught up, is answered as the duplicate it is.
    await answering(port);
    const retry = await postPlain(app, m.xml);
    expect([retry.statusCode, retry.body]).toEqual([200, 'success']);
    expect(await dedupHits(app)).toBe(dedupBefore + 1);
    expect(await replica.exists(`${app.inboundQueue.toKey('')}${m.jobId}`)).toBe(1);
  });
});

describe('REDIS_ACK_REPLICAS=1 with Redis Cluster (3 masters, a replica each)', () => {
  let cluster: TestRedisCluster;
  let app: GatewayApp;
  const prefix = `{gw-${randomBytes(4).toString('hex')}}`;

  beforeAll(async () => {
    cluster = await startRedisCluster({ replicas: 1 });
    app = await buildTestApp(configFor({ ...cluster.env, QUEUE_PREFIX: prefix }), { logger: captureLogs().logger, queuePrefix: prefix });
  }, 90_000);
  afterAll(async () => {
    await app?.close();
    await cluster?.close();
  });

  it("sends WAIT to the master that serves the queue's slot, on the connection the Cluster writes through", async () => {
    expect(isCluster(app.redis)).toBe(true);
    // A first callback: the Cluster client knows the slot map by now.
    await expect.poll(async () => (await postPlain(app, userMessage().xml)).body, { timeout: 10_000 }).toBe('success');
    const { master } = await cluster.slotNodesOf(prefix);
    const link = createReplicaWaiter(app.redis, `${app.inboundQueue.toKey('')}meta`).link();
    expect(Number(link?.node.options.port)).toBe(master);
    if (!isCluster(app.redis)) throw new Error('not a cluster');
    expect(app.redis.nodes('master')).toContain(link?.node);
  });

  it("503 while that master's replica lags — whatever the other masters' replicas do — then acks again", async () => {
    const { replicas } = await cluster.slotNodesOf(prefix);
    expect(replicas).toHaveLength(1);
    const before = await counter(app, 'ackReplicaShortfalls');
    await pause(replicas[0]!, 1_500);
    // A WAIT sent to any other master (each has an up-to-date replica and no write of ours to wait
    // for) would answer 1 at once: only the queue's own master makes this a 503.
    const refused = await Promise.all(Array.from({ length: 4 }, () => postPlain(app, userMessage().xml)));
    for (const res of refused) {
      expect(res.statusCode).toBe(503);
      expect(res.body).not.toBe('success');
    }
    expect(await counter(app, 'ackReplicaShortfalls')).toBe(before + 4);
    await answering(replicas[0]!);
    await sleep(50);
    const m = userMessage();
    expect((await postPlain(app, m.xml)).body).toBe('success');
    expect(await app.inboundQueue.getJob(m.jobId)).toBeDefined();
  });
});

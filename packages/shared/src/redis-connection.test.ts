import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { isWxError } from './errors.js';
import { loadCliConfig, loadGatewayConfig, loadWorkerConfig, type Env, type RedisTopology } from './config.js';
import { createRedisConnection, describeRedisTopology, isCluster, redisConnectionPlan } from './redis-connection.js';

/**
 * The topology from the environment and the options each role's connection gets (pure: nothing
 * connects; the built clients are lazy and never asked anything). The topologies themselves run
 * against real processes in the gateway's and the worker's topology tests; TLS needs certificates,
 * so here only that TLS is asked for where it must be.
 */

const BASE = { WECHAT_TOKEN: 't0k3n', WECHAT_APP_ID: 'wx2c2769f8efd9abc2', WECHAT_APP_SECRET: 's' };
const topologyOf = (env: Env): RedisTopology => loadGatewayConfig({ ...BASE, ...env }).redis;

/** The options of a single-node or Sentinel plan (a `Redis`). */
function redisOptions(plan: ReturnType<typeof redisConnectionPlan>): RedisOptions {
  if (plan.kind === 'cluster') throw new Error('a cluster plan');
  return plan.options;
}

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isWxError(err, 'WX_ERR_CONFIG')) return err.message;
    throw err;
  }
  throw new Error('expected a configuration error');
}

describe('the topology, from the environment', () => {
  it('is REDIS_URL alone by default, for every service', () => {
    expect(topologyOf({})).toEqual({ kind: 'single', url: 'redis://127.0.0.1:6379', tls: false });
    expect(loadWorkerConfig({ ...BASE, REDIS_URL: 'rediss://cache:6380' }).redis).toEqual({ kind: 'single', url: 'rediss://cache:6380', tls: true });
    expect(loadCliConfig({ REDIS_URL: 'redis://h:1', REDIS_TLS: 'true', REDIS_PASSWORD: 'pw' }).redis).toEqual({ kind: 'single', url: 'redis://h:1', password: 'pw', tls: true });
  });

  it('is Sentinel with REDIS_SENTINELS and REDIS_SENTINEL_NAME (REDIS_URL then unused), with both sets of credentials', () => {
    expect(
      topologyOf({
        REDIS_URL: 'redis://ignored:6379',
        REDIS_SENTINELS: 's1:26379, 10.0.0.2:26380,[fd00::3]:26381',
        REDIS_SENTINEL_NAME: 'mymaster',
        REDIS_USERNAME: 'wxrelay',
        REDIS_PASSWORD: 'data-pw',
        REDIS_SENTINEL_USERNAME: 'watcher',
        REDIS_SENTINEL_PASSWORD: 'sentinel-pw',
        REDIS_TLS: 'yes',
      }),
    ).toEqual({
      kind: 'sentinel',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: '10.0.0.2', port: 26380 },
        { host: 'fd00::3', port: 26381 },
      ],
      name: 'mymaster',
      username: 'wxrelay',
      password: 'data-pw',
      sentinelUsername: 'watcher',
      sentinelPassword: 'sentinel-pw',
      tls: true,
    });
  });

  it('is a Cluster with REDIS_CLUSTER_NODES, which needs a hash-tagged QUEUE_PREFIX', () => {
    expect(topologyOf({ REDIS_CLUSTER_NODES: 'r1:6379,r2:6379', QUEUE_PREFIX: '{wx}' })).toEqual({
      kind: 'cluster',
      nodes: [
        { host: 'r1', port: 6379 },
        { host: 'r2', port: 6379 },
      ],
      tls: false,
    });
    expect(configError(() => topologyOf({ REDIS_CLUSTER_NODES: 'r1:6379' }))).toMatch(/QUEUE_PREFIX must carry a hash tag in Redis Cluster \(REDIS_CLUSTER_NODES is set\), e\.g\. QUEUE_PREFIX=\{wx\}/);
    expect(configError(() => loadCliConfig({ REDIS_CLUSTER_NODES: 'r1:6379', QUEUE_PREFIX: 'tenant-a' }))).toMatch(/QUEUE_PREFIX=\{tenant-a\}/);
  });

  it('reports every mistake at once, each with what to do', () => {
    const message = configError(() => topologyOf({ REDIS_SENTINELS: 's1:26379,s2:99999', REDIS_CLUSTER_NODES: 'r1:6379', QUEUE_PREFIX: '{a}{b}' }));
    expect(message).toMatch(/REDIS_SENTINEL_NAME is missing \(REDIS_SENTINELS is set\)/);
    expect(message).toMatch(/REDIS_SENTINELS has a bad address \("s2:99999"\)/);
    expect(message).toMatch(/REDIS_CLUSTER_NODES is set together with REDIS_SENTINELS \(choose one topology\)/);
    expect(configError(() => topologyOf({ REDIS_CLUSTER_NODES: 'r1' }))).toMatch(/REDIS_CLUSTER_NODES is invalid .*: comma-separated host:port/);
    expect(message).toMatch(/QUEUE_PREFIX is invalid .*: letters, digits, - or _, with at most one \{hash tag\}/);
    for (const bad of ['{}', 'wx}', '{wx', 'a b', `{${'x'.repeat(64)}}`]) expect(configError(() => topologyOf({ QUEUE_PREFIX: bad })), bad).toMatch(/QUEUE_PREFIX is invalid/);
    for (const good of ['wx', '{wx}', 'app-{wx}-1', '{tenant_a}']) expect(loadGatewayConfig({ ...BASE, QUEUE_PREFIX: good }).queuePrefix).toBe(good);
  });
});

describe('the connection each role gets', () => {
  it('gateway: fails fast (no offline queue, one retry), reconnects forever; worker: waits (maxRetriesPerRequest null); cli: lazy, gives up', () => {
    const single = topologyOf({});
    const gw = redisConnectionPlan(single, 'gateway');
    expect(gw).toMatchObject({ kind: 'single', url: 'redis://127.0.0.1:6379', options: { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2_000, lazyConnect: false } });
    expect(redisOptions(gw).retryStrategy?.(1_000)).toBe(1_000);
    const worker = redisOptions(redisConnectionPlan(single, 'worker'));
    expect(worker.maxRetriesPerRequest).toBeNull();
    expect(worker.enableOfflineQueue).toBeUndefined();
    expect(worker.retryStrategy?.(1_000)).toBe(2_000);
    const cli = redisOptions(redisConnectionPlan(single, 'cli'));
    expect(cli).toMatchObject({ lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5_000 });
    expect(cli.retryStrategy?.(3)).toBeNull();
  });

  it('Cluster: the offline queue and retries at the top, the rest per node', () => {
    const cluster = topologyOf({ REDIS_CLUSTER_NODES: 'r1:6379,r2:6380', QUEUE_PREFIX: '{wx}', REDIS_USERNAME: 'u', REDIS_PASSWORD: 'p' });
    const gw = redisConnectionPlan(cluster, 'gateway');
    if (gw.kind !== 'cluster') throw new Error(gw.kind);
    expect(gw.nodes).toEqual([{ host: 'r1', port: 6379 }, { host: 'r2', port: 6380 }]);
    expect(gw.options).toMatchObject({ enableOfflineQueue: false, redisOptions: { maxRetriesPerRequest: 1, username: 'u', password: 'p' } });
    expect(gw.options.redisOptions).not.toHaveProperty('tls');
    expect(gw.options.clusterRetryStrategy?.(50)).toBe(1_000);
    const worker = redisConnectionPlan(cluster, 'worker');
    if (worker.kind !== 'cluster') throw new Error(worker.kind);
    expect(worker.options.enableOfflineQueue).toBe(true);
    // BullMQ reads a Cluster's redisOptions for this.
    expect(worker.options.redisOptions?.maxRetriesPerRequest).toBeNull();
  });

  it('TLS: rediss:// or REDIS_TLS=true on one node; with Sentinel to the sentinels and the master; with Cluster to every node', () => {
    expect(redisOptions(redisConnectionPlan(topologyOf({ REDIS_URL: 'rediss://cache:6380' }), 'gateway')).tls).toEqual({});
    expect(redisOptions(redisConnectionPlan(topologyOf({ REDIS_URL: 'redis://cache:6379', REDIS_TLS: 'true' }), 'worker')).tls).toEqual({});
    expect(redisConnectionPlan(topologyOf({}), 'gateway').options).not.toHaveProperty('tls');

    const sentinel = redisConnectionPlan(topologyOf({ REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'm', REDIS_TLS: 'true', REDIS_SENTINEL_PASSWORD: 'sp' }), 'gateway');
    expect(sentinel.options).toMatchObject({ sentinels: [{ host: 's1', port: 26379 }], name: 'm', sentinelPassword: 'sp', tls: {}, enableTLSForSentinelMode: true, sentinelTLS: {}, enableOfflineQueue: false, failoverDetector: true });
    expect(redisConnectionPlan(topologyOf({ REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'm' }), 'gateway').options).not.toHaveProperty('tls');

    const cluster = redisConnectionPlan(topologyOf({ REDIS_CLUSTER_NODES: 'r1:6379', QUEUE_PREFIX: '{wx}', REDIS_TLS: 'on' }), 'worker');
    if (cluster.kind !== 'cluster') throw new Error(cluster.kind);
    expect(cluster.options.redisOptions?.tls).toEqual({});
    // Host names kept for the certificates (ioredis's advice for TLS clusters).
    let looked: string | undefined;
    cluster.options.dnsLookup?.('r1.example', (_err, address) => (looked = address));
    expect(looked).toBe('r1.example');
  });

  it('builds the clients ioredis would connect with (lazily: nothing connects here)', () => {
    const single = createRedisConnection(topologyOf({ REDIS_URL: 'rediss://alice:from-url@cache:6380/2', REDIS_USERNAME: 'bob', REDIS_PASSWORD: 'from-env' }), 'gateway', { lazyConnect: true }) as Redis;
    // The URL's own userinfo wins; TLS from rediss://.
    expect(single.options).toMatchObject({ host: 'cache', port: 6380, db: 2, username: 'alice', password: 'from-url', enableOfflineQueue: false });
    expect(single.options.tls).toBeDefined();
    const fromEnv = createRedisConnection(topologyOf({ REDIS_URL: 'redis://cache:6379', REDIS_USERNAME: 'bob', REDIS_PASSWORD: 'from-env' }), 'worker', { lazyConnect: true }) as Redis;
    expect(fromEnv.options).toMatchObject({ username: 'bob', password: 'from-env', maxRetriesPerRequest: null });
    expect(isCluster(single)).toBe(false);

    const sentinel = createRedisConnection(topologyOf({ REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'm', REDIS_PASSWORD: 'dp', REDIS_SENTINEL_PASSWORD: 'sp' }), 'gateway', { lazyConnect: true }) as Redis;
    expect(sentinel.options).toMatchObject({ name: 'm', password: 'dp', sentinelPassword: 'sp', sentinels: [{ host: 's1', port: 26379 }] });

    const cluster = createRedisConnection(topologyOf({ REDIS_CLUSTER_NODES: 'r1:6379', QUEUE_PREFIX: '{wx}', REDIS_TLS: 'true', REDIS_PASSWORD: 'cp' }), 'worker', { lazyConnect: true }) as Cluster;
    expect(isCluster(cluster)).toBe(true);
    expect(cluster.options.redisOptions).toMatchObject({ password: 'cp', tls: {}, maxRetriesPerRequest: null });
    for (const c of [single, fromEnv, sentinel, cluster]) c.disconnect();
  });

  it('describes the topology for the logs without passwords', () => {
    expect(describeRedisTopology(topologyOf({ REDIS_URL: 'rediss://alice:secret@cache:6380' }))).toBe('rediss://***@cache:6380 (TLS)');
    expect(describeRedisTopology(topologyOf({ REDIS_SENTINELS: 's1:26379,[fd00::3]:26379', REDIS_SENTINEL_NAME: 'm', REDIS_PASSWORD: 'x' }))).toBe('sentinel master "m" via s1:26379,[fd00::3]:26379');
    expect(describeRedisTopology(topologyOf({ REDIS_CLUSTER_NODES: 'r1:6379', QUEUE_PREFIX: '{wx}', REDIS_TLS: 'true' }))).toBe('cluster via r1:6379 (TLS)');
  });
});

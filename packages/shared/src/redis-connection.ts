import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisNodeAddress, RedisTopology } from './config.js';

/**
 * `@wxrelay/shared/redis`: the one place a Redis connection is made. From the configured topology
 * (`RedisTopology`: one node at REDIS_URL, the master a set of sentinels names, or a Redis Cluster)
 * it builds ioredis's own `Redis` (single or Sentinel-backed) or `Cluster`, with the options each
 * role needs:
 *
 * - `gateway`: fails fast. No offline queue, one retry per command: a command issued while Redis
 *   is away (down, or between a Sentinel failover's kill and the new master) is rejected at once,
 *   so the callback gets 503 and WeChat retries — never `success` for an enqueue that failed. It
 *   reconnects by itself, forever, with a capped backoff, and acks again once Redis is back.
 * - `worker`: waits. `maxRetriesPerRequest: null` (BullMQ requires it of a worker's connection),
 *   the offline queue on, reconnecting forever: a worker rides out a failover or an outage.
 * - `cli`: the operator's command line: connects on demand, gives up after a few tries.
 *
 * ACL user and password: a REDIS_URL's userinfo, else REDIS_USERNAME / REDIS_PASSWORD (the only
 * source with Sentinel and Cluster; the sentinels have their own REDIS_SENTINEL_USERNAME /
 * REDIS_SENTINEL_PASSWORD). TLS: a `rediss://` URL or REDIS_TLS=true, for every connection
 * (Sentinel: the sentinels and the master; Cluster: every node).
 *
 * {@link redisConnectionPlan} is the pure part (what would be built, options included), which the
 * tests read; {@link createRedisConnection} builds it.
 *
 * @module
 */

/** A connection as the services use it: a single node (or Sentinel-backed) `Redis`, or a `Cluster`. */
export type RedisClient = Redis | Cluster;

/** Whose connection: the gateway fails fast, a worker waits, the command line gives up soon. */
export type RedisRole = 'gateway' | 'worker' | 'cli';

export interface RedisConnectionOptions {
  /** How long a connection attempt may take before it counts as failed (default 2 s; cli 5 s). */
  readonly connectTimeoutMs?: number;
  /** Connect on the first command or `connect()` instead of at once (the cli's default). */
  readonly lazyConnect?: boolean;
}

/** What {@link createRedisConnection} builds: ioredis's constructor arguments. */
export type RedisConnectionPlan =
  | { readonly kind: 'single'; readonly url: string; readonly options: RedisOptions }
  | { readonly kind: 'sentinel'; readonly options: RedisOptions }
  | { readonly kind: 'cluster'; readonly nodes: readonly RedisNodeAddress[]; readonly options: ClusterOptions };

/** Reconnect delays: doubling from 100 ms, capped at `capMs`; never gives up. */
const backoff = (capMs: number) => (times: number): number => Math.min(100 * 2 ** Math.min(times, 6), capMs);

/** The cli gives up after a few attempts. */
const fewTries = (times: number): number | null => (times > 2 ? null : 200);

/**
 * A master demoted to replica (Sentinel failed over while this client stayed connected to it)
 * answers writes with READONLY: reconnect, which asks the sentinels for the master again. The
 * command that got READONLY fails (a 503, or a job attempt retried): it was not run.
 */
const reconnectOnReadonly = (err: Error): boolean => err.message.startsWith('READONLY');

/** Per-node options of a role (for a Cluster, its `redisOptions`). */
function nodeOptions(role: RedisRole, opts: RedisConnectionOptions): RedisOptions {
  const connectTimeout = opts.connectTimeoutMs ?? (role === 'cli' ? 5_000 : 2_000);
  switch (role) {
    case 'gateway':
      return { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout, retryStrategy: backoff(1_000) };
    case 'worker':
      return { maxRetriesPerRequest: null, connectTimeout, retryStrategy: backoff(2_000) };
    case 'cli':
      return { maxRetriesPerRequest: 1, connectTimeout, retryStrategy: fewTries };
  }
}

function auth(topology: RedisTopology): Pick<RedisOptions, 'username' | 'password'> {
  return {
    ...(topology.username === undefined ? {} : { username: topology.username }),
    ...(topology.password === undefined ? {} : { password: topology.password }),
  };
}

/** The constructor arguments for `topology` and `role` (pure: nothing connects). */
export function redisConnectionPlan(topology: RedisTopology, role: RedisRole, opts: RedisConnectionOptions = {}): RedisConnectionPlan {
  const lazyConnect = opts.lazyConnect ?? role === 'cli';
  const node = nodeOptions(role, opts);
  switch (topology.kind) {
    case 'single':
      // The URL's own userinfo wins over REDIS_USERNAME/REDIS_PASSWORD (ioredis fills only what the URL lacks).
      return { kind: 'single', url: topology.url, options: { ...node, ...auth(topology), lazyConnect, ...(topology.tls ? { tls: {} } : {}) } };
    case 'sentinel':
      return {
        kind: 'sentinel',
        options: {
          ...node,
          ...auth(topology),
          lazyConnect,
          sentinels: topology.sentinels.map((s) => ({ host: s.host, port: s.port })),
          name: topology.name,
          ...(topology.sentinelUsername === undefined ? {} : { sentinelUsername: topology.sentinelUsername }),
          ...(topology.sentinelPassword === undefined ? {} : { sentinelPassword: topology.sentinelPassword }),
          // Sentinel's +switch-master reconnects at once, instead of when the old master's socket fails.
          failoverDetector: true,
          reconnectOnError: reconnectOnReadonly,
          ...(role === 'cli' ? { sentinelRetryStrategy: fewTries } : {}),
          // TLS to the master needs enableTLSForSentinelMode beside `tls`; `sentinelTLS` is for the sentinels.
          ...(topology.tls ? { tls: {}, enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
        },
      };
    case 'cluster': {
      // A Cluster takes its retry strategy and offline queue at the top, the rest per node.
      const { retryStrategy, enableOfflineQueue, ...perNode } = node;
      return {
        kind: 'cluster',
        nodes: topology.nodes.map((n) => ({ host: n.host, port: n.port })),
        options: {
          lazyConnect,
          enableOfflineQueue: enableOfflineQueue ?? true,
          clusterRetryStrategy: role === 'cli' ? fewTries : (retryStrategy ?? backoff(2_000)),
          redisOptions: { ...perNode, ...auth(topology), ...(topology.tls ? { tls: {} } : {}) },
          // With TLS, keep the seed nodes' host names (certificates name hosts, not addresses):
          // ioredis's advice for TLS clusters such as ElastiCache.
          ...(topology.tls ? { dnsLookup: (address: string, callback: (err: null, address: string) => void) => callback(null, address) } : {}),
        },
      };
    }
  }
}

/** Builds the connection {@link redisConnectionPlan} describes. */
export function createRedisConnection(topology: RedisTopology, role: RedisRole, opts: RedisConnectionOptions = {}): RedisClient {
  const plan = redisConnectionPlan(topology, role, opts);
  switch (plan.kind) {
    case 'single':
      return new Redis(plan.url, plan.options);
    case 'sentinel':
      return new Redis(plan.options);
    case 'cluster':
      return new Cluster(plan.nodes.map((n) => ({ ...n })), plan.options);
  }
}

/** One line for logs and error messages: where Redis is, without any password. */
export function describeRedisTopology(topology: RedisTopology): string {
  const list = (nodes: readonly RedisNodeAddress[]): string => nodes.map((n) => (n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`)).join(',');
  const tls = topology.tls ? ' (TLS)' : '';
  switch (topology.kind) {
    case 'single':
      return `${topology.url.replace(/\/\/[^@/]*@/, '//***@')}${tls}`;
    case 'sentinel':
      return `sentinel master "${topology.name}" via ${list(topology.sentinels)}${tls}`;
    case 'cluster':
      return `cluster via ${list(topology.nodes)}${tls}`;
  }
}

/** True for a Redis Cluster connection (BullMQ and ioredis mark it `isCluster`). */
export function isCluster(redis: RedisClient): redis is Cluster {
  return (redis as { isCluster?: boolean }).isCluster === true;
}

import type { Worker } from 'bullmq';
import type { RedisClient } from '@wxrelay/shared/redis';
import type { PrivateRoutes } from '@wxrelay/shared';
import { withTimeout } from './timeout.js';

/** How long /healthz waits for Redis to answer PING before calling it down. */
const REDIS_PING_TIMEOUT_MS = 1_000;

export type HealthCheckName = 'redis' | 'worker' | 'rateLimit';

/** One check: passed or not, and a short word on why (never a secret or a URL). */
export interface HealthCheckResult {
  readonly ok: boolean;
  readonly detail: string;
}

/** What `/healthz` answers: ok when every check is, with the names of those that are not. */
export interface HealthReport {
  readonly ok: boolean;
  readonly failed: readonly HealthCheckName[];
  readonly checks: Readonly<Record<HealthCheckName, HealthCheckResult>>;
}

export interface HealthDeps {
  /** The worker's Redis connection. */
  readonly redis: RedisClient;
  /** The BullMQ workers of the process: one per queue it consumes (each shard, QUEUE_SHARDS). */
  readonly workers: readonly Pick<Worker, 'isRunning' | 'isPaused' | 'toKey'>[];
}

/**
 * The worker's health, as orchestrators ask it: Redis answers a PING, the BullMQ worker is running
 * (started, not paused, not closing), and the queue is not paused by a WeChat 45009 rate limit
 * (`worker.rateLimit`, which stops every worker of the queue for a while: the queue's limiter key
 * in Redis holds the pause; it is not asked when Redis is down, the redis check failing already).
 * With several shards every one of the process's workers must run, and a pause of any queue counts.
 */
export function createHealthCheck(deps: HealthDeps): () => Promise<HealthReport> {
  const { redis, workers } = deps;
  const ask = async <T>(what: Promise<T>): Promise<T | 'timeout'> => withTimeout(what, REDIS_PING_TIMEOUT_MS, () => 'timeout' as const);

  return async () => {
    let redisCheck: HealthCheckResult;
    // A connection that is not ready would queue the PING until Redis is back: answer at once.
    if (redis.status !== 'ready') redisCheck = { ok: false, detail: `connection ${redis.status}` };
    else {
      const pong = await ask(redis.ping()).catch(() => 'error' as const);
      redisCheck = pong === 'PONG' ? { ok: true, detail: 'PONG' } : { ok: false, detail: pong === 'timeout' ? `no answer within ${REDIS_PING_TIMEOUT_MS} ms` : 'PING failed' };
    }

    const workerCheck: HealthCheckResult = !workers.every((w) => w.isRunning())
      ? { ok: false, detail: 'not running' }
      : workers.some((w) => w.isPaused())
        ? { ok: false, detail: 'paused' }
        : { ok: true, detail: 'running' };

    let limitMs = 0;
    if (redisCheck.ok) {
      // One key per queue (each in its shard's slot): one command each.
      const ttls = await Promise.all(workers.map((w) => ask(redis.pttl(w.toKey('limiter'))).catch(() => 'error' as const)));
      for (const ttl of ttls) if (typeof ttl === 'number') limitMs = Math.max(limitMs, ttl);
    }
    const rateCheck: HealthCheckResult =
      limitMs > 0
        ? { ok: false, detail: `paused by a WeChat rate limit (45009) for another ${limitMs} ms` }
        : { ok: true, detail: redisCheck.ok ? 'not limited' : 'unknown (redis down)' };

    const checks = { redis: redisCheck, worker: workerCheck, rateLimit: rateCheck };
    const failed = (Object.keys(checks) as HealthCheckName[]).filter((k) => !checks[k].ok);
    return { ok: failed.length === 0, failed, checks };
  };
}

/** `GET /healthz` on the worker's private listener: 200 when healthy, else 503; no auth, no secrets. */
export function healthRoutes(check: () => Promise<HealthReport>): PrivateRoutes {
  return {
    name: 'health',
    register: (app) => {
      app.get('/healthz', async (_req, reply) => {
        const report = await check();
        return reply.code(report.ok ? 200 : 503).header('cache-control', 'no-store').send(report);
      });
    },
  };
}

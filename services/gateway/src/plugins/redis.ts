import fp from 'fastify-plugin';
import type { RedisTopology } from '@wxrelay/shared/config';
import { createRedisConnection, describeRedisTopology, type RedisClient } from '@wxrelay/shared/redis';

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's one Redis connection (fails fast: no offline queue); a `Cluster` in a Redis Cluster. */
    redis: RedisClient;
  }
}

export interface RedisPluginOptions {
  /** Where Redis is: REDIS_URL, Sentinel or Cluster (the config's `redis`). */
  readonly topology: RedisTopology;
  /** How long a connection attempt may take before it counts as failed. */
  readonly connectTimeoutMs?: number;
}

/**
 * Creates the gateway's Redis connection (`@wxrelay/shared/redis`, role `gateway`). It fails fast:
 * with no offline queue, a command issued while Redis is away (down, or a Sentinel failover under
 * way) is rejected at once instead of waiting, so a failed enqueue becomes a 503 and WeChat
 * retries. It reconnects by itself, forever, with a capped backoff (through the sentinels to
 * whichever node is master now, or to the cluster's nodes).
 */
export function createGatewayRedis(opts: RedisPluginOptions): RedisClient {
  return createRedisConnection(opts.topology, 'gateway', { connectTimeoutMs: opts.connectTimeoutMs ?? 2_000 });
}

export const redisPlugin = fp<RedisPluginOptions>(
  (app, opts, done) => {
    const redis = createGatewayRedis(opts);
    app.log.info({ redis: describeRedisTopology(opts.topology) }, 'redis topology');
    let wasDown = false;
    redis.on('error', (err: Error) => {
      if (!wasDown) app.log.error({ err }, 'redis connection error');
      wasDown = true;
    });
    redis.on('ready', () => {
      if (wasDown) app.log.info('redis connection restored');
      wasDown = false;
    });
    app.decorate<RedisClient>('redis', redis);
    // Give the first connection a moment so the first callbacks do not meet a cold connection;
    // if Redis is not there, start anyway: callbacks get 503 until it comes.
    app.addHook('onReady', async () => {
      if (redis.status === 'ready') return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, opts.connectTimeoutMs ?? 2_000);
        function done(): void {
          clearTimeout(timer);
          redis.off('ready', done);
          resolve();
        }
        redis.once('ready', done);
      });
    });
    app.addHook('onClose', async () => {
      try {
        await redis.quit();
      } catch {
        redis.disconnect();
      }
    });
    done();
  },
  { name: 'wxrelay-redis', fastify: '5.x' },
);

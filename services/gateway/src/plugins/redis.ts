import fp from 'fastify-plugin';
import { Redis } from 'ioredis';

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's one Redis connection (fails fast: no offline queue). */
    redis: Redis;
  }
}

export interface RedisPluginOptions {
  readonly url: string;
  /** How long a connection attempt may take before it counts as failed. */
  readonly connectTimeoutMs?: number;
}

/**
 * Creates the gateway's Redis connection. It fails fast: with no offline queue, a command issued
 * while Redis is away is rejected at once instead of waiting, so a failed enqueue becomes a 503
 * and WeChat retries. It reconnects by itself, forever, with a capped backoff.
 */
export function createGatewayRedis(opts: RedisPluginOptions): Redis {
  return new Redis(opts.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: opts.connectTimeoutMs ?? 2_000,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1_000),
    lazyConnect: false,
  });
}

export const redisPlugin = fp<RedisPluginOptions>(
  (app, opts, done) => {
    const redis = createGatewayRedis(opts);
    let wasDown = false;
    redis.on('error', (err: Error) => {
      if (!wasDown) app.log.error({ err }, 'redis connection error');
      wasDown = true;
    });
    redis.on('ready', () => {
      if (wasDown) app.log.info('redis connection restored');
      wasDown = false;
    });
    app.decorate('redis', redis);
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

import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from './redis.js';

describe('startRedis', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis({ private: true });
  });
  afterAll(async () => {
    await redis.close();
  });

  it('gives a real Redis that can be stopped and started again on the same URL', async () => {
    const client = new Redis(redis.url, { maxRetriesPerRequest: null });
    client.on('error', () => undefined);
    const key = `${redis.uniquePrefix('k')}:x`;
    await client.set(key, 'v');
    expect(await client.get(key)).toBe('v');
    expect(await client.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);

    await redis.stop();
    await redis.start();
    expect(await client.ping()).toBe('PONG');
    client.disconnect();
  });

  it('hands out distinct prefixes', () => {
    expect(redis.uniquePrefix('q')).not.toBe(redis.uniquePrefix('q'));
  });

  it('reports why a spawned redis-server could not start (instead of hanging)', async () => {
    await expect(startRedis({ env: { WXRELAY_TEST_NO_DOCKER: '1' }, private: true, args: ['--no-such-option'] })).rejects.toThrow(/redis-server exited/);
  });
});

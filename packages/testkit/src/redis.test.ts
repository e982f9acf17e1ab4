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

  it('prefers an installed redis-server to Docker', async () => {
    let asked = false;
    const containers = { answers: () => ((asked = true), Promise.resolve(true)), start: () => Promise.reject(new Error('not this way')) };
    const spawned = await startRedis({ env: {}, private: true, containers });
    try {
      expect(spawned.source).toBe('redis-server');
      expect(asked).toBe(false);
    } finally {
      await spawned.close();
    }
  });

  it('reports why a spawned redis-server could not start (instead of hanging)', async () => {
    await expect(startRedis({ env: { WXRELAY_TEST_NO_DOCKER: '1' }, private: true, args: ['--no-such-option'] })).rejects.toThrow(/redis-server exited/);
  });
});

describe('startRedis without a redis-server', () => {
  const noRedisServer = { PATH: '/nonexistent' };

  it('uses Docker when an engine answers', async () => {
    const fake = { url: 'redis://container:6379', source: 'testcontainers' } as TestRedis;
    let startedWith: readonly string[] = [];
    const redis = await startRedis({ env: noRedisServer, args: ['--appendonly', 'yes'], containers: { answers: () => Promise.resolve(true), start: (args) => ((startedWith = args), Promise.resolve(fake)) } });
    expect(redis).toBe(fake);
    expect(startedWith).toEqual(['--appendonly', 'yes']);
  });

  it('fails with what to install when the Docker engine cannot pull or start the image (offline)', async () => {
    const offline = { answers: () => Promise.resolve(true), start: () => Promise.reject(new Error('(HTTP code 500) server error - Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host\nmore detail')) };
    const err = await startRedis({ env: noRedisServer, containers: offline }).then(() => undefined, (e: unknown) => e as Error);
    expect(err?.message).toMatch(/redis-server is not installed/);
    expect(err?.message).toMatch(/Docker could not start redis:7-alpine \(.*no such host\)/);
    expect(err?.message).not.toContain('more detail');
    expect(err?.message).toContain('apt-get install -y redis-server');
    expect(err?.message).toContain('REDIS_URL=');
  });

  it('fails with what to install when no Docker engine answers, or Docker is turned off', async () => {
    const none = { answers: () => Promise.resolve(false), start: () => Promise.reject(new Error('not asked')) };
    await expect(startRedis({ env: noRedisServer, containers: none })).rejects.toThrow(/no Docker engine answers\. Install redis-server \(Debian\/Ubuntu: apt-get install -y redis-server/);
    await expect(startRedis({ env: { ...noRedisServer, WXRELAY_TEST_NO_DOCKER: '1' }, containers: none })).rejects.toThrow(/turned off \(WXRELAY_TEST_NO_DOCKER=1\).*apt-get install -y redis-server/);
  });
});

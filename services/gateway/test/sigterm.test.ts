import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIfStale, freePort, spawnService, type SpawnedService, type TestRedis } from '@wxrelay/testkit';
import { gatewayEnv, plainRequest, startRedis, textXml } from './support.js';

describe('the built gateway under SIGTERM', () => {
  let redis: TestRedis;
  let gateway: SpawnedService;
  let base: string;

  beforeAll(async () => {
    buildIfStale(['services/gateway']);
    redis = await startRedis({ private: true });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    gateway = spawnService('services/gateway/dist/main.js', gatewayEnv(redis.url, { PORT: String(port), HOST: '127.0.0.1', METRICS_PORT: '0', ENQUEUE_TIMEOUT_MS: '3000' }));
    await gateway.waitForLine(/gateway listening/);
  }, 120_000);

  afterAll(async () => {
    await gateway.stop('SIGKILL');
    await redis.close();
  });

  it('finishes every request in flight (each gets success, each is queued), closes Redis and exits 0', async () => {
    const admin = new Redis(redis.url);
    // Hold Redis writes for a moment, so the requests are truly in flight (waiting on their enqueue)
    // when SIGTERM arrives.
    await admin.call('CLIENT', 'PAUSE', '800', 'WRITE');
    const requests = Array.from({ length: 40 }, () => {
      const xml = textXml();
      return fetch(base + plainRequest(xml).url, { method: 'POST', body: xml, headers: { 'content-type': 'text/xml' } }).then(async (r) => ({ status: r.status, body: await r.text() }));
    });
    await new Promise((r) => setTimeout(r, 200));
    gateway.proc.kill('SIGTERM');
    const answers = await Promise.all(requests);
    expect(answers.every((a) => a.status === 200 && a.body === 'success')).toBe(true);
    expect(await gateway.exited).toBe(0);
    await gateway.waitForLine(/"msg":"stopped"/);

    const keys = await admin.keys('wx:wx-inbound:msg-*');
    expect(keys.filter((k) => /^wx:wx-inbound:msg-[^:]+$/.test(k))).toHaveLength(40);
    admin.disconnect();
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});

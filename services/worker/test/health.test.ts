import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMetricsServer, type MetricsServer } from '@wxrelay/shared';
import { buildIfStale, freePort, spawnService, startRedis, waitFor, type SpawnedService, type TestRedis } from '@wxrelay/testkit';
import { healthRoutes, type HealthReport } from '../src/health.js';
import { createWorkerMetrics } from '../src/metrics.js';
import { buildWorker, type RunningWorker } from '../src/worker.js';
import { captureLogger, workerConfig } from './support.js';

const APP = { WECHAT_APP_ID: 'wx5823bf96d3bd56c7', WECHAT_APP_SECRET: 'health-check-app-secret' } as const;

async function healthz(server: MetricsServer): Promise<{ status: number; body: HealthReport; text: string }> {
  const res = await fetch(`${server.origin}/healthz`);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as HealthReport, text };
}

describe('worker /healthz on the private listener', () => {
  let redis: TestRedis;
  let worker: RunningWorker;
  let server: MetricsServer;

  beforeAll(async () => {
    // Private: this test stops its Redis.
    redis = await startRedis({ private: true });
    const config = workerConfig({ ...APP, REDIS_URL: redis.url, QUEUE_PREFIX: redis.uniquePrefix('hz'), WECHAT_API_BASE_URL: 'http://127.0.0.1:9', WORKER_SHUTDOWN_TIMEOUT_MS: '1000' });
    worker = await buildWorker(config, { log: captureLogger('fatal').log, metrics: createWorkerMetrics({ defaultMetrics: false }), stateAppId: redis.uniquePrefix('app') });
    const registry = worker.metrics.registry;
    server = await startMetricsServer({ host: '127.0.0.1', port: 0, token: 'scrape-me', render: () => registry.metrics(), contentType: registry.contentType, routes: [healthRoutes(() => worker.health())] });
  });
  afterAll(async () => {
    await server.close();
    // After the Redis restart below, BullMQ's Worker.close now and then waits on its blocking
    // connection for a minute (seen in about one run in four); production bounds its shutdown the
    // same way (main.ts). The connection is dropped either way.
    await Promise.race([worker.close(1_000), new Promise((resolve) => setTimeout(resolve, 5_000))]);
    worker.redis.disconnect();
    await redis.close();
  });

  it('503 before the worker takes jobs, saying which check failed', async () => {
    await waitFor(() => Promise.resolve(worker.redis.status === 'ready'), 10_000, 'the connection to Redis');
    const res = await healthz(server);
    expect(res.status).toBe(503);
    expect(res.body.ok).toBe(false);
    expect(res.body.failed).toEqual(['worker']);
    expect(res.body.checks.worker).toEqual({ ok: false, detail: 'not running' });
    expect(res.body.checks.redis.ok).toBe(true);
  });

  it('200 once it runs, without the metrics token, and with no secret in it', async () => {
    worker.start();
    await waitFor(() => Promise.resolve(worker.worker.isRunning()), 10_000, 'the worker to run');
    const res = await healthz(server);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      ok: true,
      failed: [],
      checks: { redis: { ok: true, detail: 'PONG' }, worker: { ok: true, detail: 'running' }, rateLimit: { ok: true, detail: 'not limited' } },
    });
    expect(res.text).not.toContain(APP.WECHAT_APP_SECRET);
    expect(res.text).not.toContain(redis.url);
    // /metrics beside it still wants its token.
    expect((await fetch(server.url)).status).toBe(401);
  });

  it('503 while a 45009 rate limit pauses the queue, 200 once it is lifted', async () => {
    await worker.worker.rateLimit(600_000);
    const limited = await healthz(server);
    expect(limited.status).toBe(503);
    expect(limited.body.failed).toEqual(['rateLimit']);
    expect(limited.body.checks.rateLimit.detail).toMatch(/^paused by a WeChat rate limit \(45009\) for another \d+ ms$/);
    await worker.redis.del(worker.worker.toKey('limiter'));
    expect((await healthz(server)).status).toBe(200);
  });

  it('503 when Redis is down, 200 again once it is back', async () => {
    await redis.stop();
    await waitFor(async () => (await healthz(server)).status === 503, 15_000, '/healthz to see Redis down');
    const down = await healthz(server);
    expect(down.body.failed).toContain('redis');
    expect(down.body.checks.redis.ok).toBe(false);
    expect(down.text).not.toContain(redis.url);
    await redis.start();
    await waitFor(async () => (await healthz(server)).status === 200, 30_000, '/healthz to see Redis back');
  });
});

describe('the built worker', () => {
  let redis: TestRedis;
  let proc: SpawnedService;
  let base: string;

  beforeAll(async () => {
    buildIfStale(['services/worker']);
    redis = await startRedis();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    proc = spawnService('services/worker/dist/main.js', {
      ...APP,
      REDIS_URL: redis.url,
      QUEUE_PREFIX: redis.uniquePrefix('hzp'),
      WECHAT_API_BASE_URL: 'http://127.0.0.1:9',
      METRICS_PORT: String(port),
      METRICS_HOST: '127.0.0.1',
      METRICS_TOKEN: 'scrape-me',
      LOG_LEVEL: 'info',
    });
    await proc.waitForLine(/worker started/);
  }, 120_000);
  afterAll(async () => {
    await proc.stop('SIGTERM');
    await redis.close();
  });

  it('answers /healthz 200 (no token needed) beside /metrics (token needed)', async () => {
    await waitFor(async () => (await fetch(`${base}/healthz`)).status === 200, 10_000, 'the worker to be healthy');
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    expect((await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer scrape-me' } })).status).toBe(200);
  });
});

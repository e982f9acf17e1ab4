import { Worker, type Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_NAMES, startMetricsServer, type MetricsServer, type PrivateRoutes } from '@wxrelay/shared';
import { buildIfStale, freePort, spawnService, waitFor, type SpawnedService, type TestRedis } from '@wxrelay/testkit';
import { DASHBOARD_PATH, dashboardRoutes } from '../src/dashboard.js';
import { captureLogs, gatewayEnv, startGateway, startRedis, type GatewayHarness } from './support.js';

const ADMIN = 'adm1n-t0ken';
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const AS_ADMIN = { authorization: basic('admin', ADMIN) };

/** The private listener as main.ts opens it: /metrics plus the dashboard. */
async function privateListener(gw: GatewayHarness, opts: { actions?: boolean; queue?: Queue; before?: readonly PrivateRoutes[] } = {}) {
  const logs = captureLogs();
  const registry = gw.app.metrics.registry;
  const server = await startMetricsServer({
    host: '127.0.0.1',
    port: 0,
    token: 'scrape-me',
    render: () => registry.metrics(),
    contentType: registry.contentType,
    routes: [...(opts.before ?? []), dashboardRoutes({ queue: opts.queue ?? gw.app.inboundQueue, token: ADMIN, actions: opts.actions ?? false, log: logs.logger })],
  });
  return { server, logs };
}

/** A job of the gateway's queue that has failed (one attempt, a processor that throws). */
async function failedJob(redis: TestRedis, gw: GatewayHarness): Promise<string> {
  const queue = gw.app.inboundQueue;
  const job = await queue.add(JOB_NAMES.inbound, { v: 1 }, { jobId: `msg-dash-${Date.now()}`, attempts: 1 });
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  const worker = new Worker(queue.name, () => Promise.reject(new Error('boom')), { connection, prefix: gw.prefix });
  try {
    await waitFor(async () => (await queue.getJobState(job.id!)) === 'failed', 15_000, 'the job to fail');
  } finally {
    await worker.close();
    connection.disconnect();
  }
  return job.id!;
}

describe('the queue dashboard (Bull Board) on the private listener', () => {
  let redis: TestRedis;
  let gw: GatewayHarness;
  let priv: { server: MetricsServer; logs: ReturnType<typeof captureLogs> };
  let jobId: string;
  let publicBase: string;
  const api = (server: MetricsServer, path: string): string => `${server.origin}${DASHBOARD_PATH}/api/queues${path}`;

  beforeAll(async () => {
    redis = await startRedis();
    gw = await startGateway(redis);
    priv = await privateListener(gw);
    jobId = await failedJob(redis, gw);
    publicBase = await gw.app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await priv.server.close();
    await gw.close();
    await redis.close();
  });

  it('answers 401 with a basic-auth challenge without credentials, or with wrong ones', async () => {
    for (const path of [DASHBOARD_PATH, `${DASHBOARD_PATH}/api/queues`, `${DASHBOARD_PATH}/static/favicon-32x32.png`]) {
      const res = await fetch(`${priv.server.origin}${path}`);
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    }
    expect((await fetch(`${priv.server.origin}${DASHBOARD_PATH}`, { headers: { authorization: basic('admin', 'wrong') } })).status).toBe(401);
    expect((await fetch(`${priv.server.origin}${DASHBOARD_PATH}`, { headers: { authorization: basic('root', ADMIN) } })).status).toBe(401);
    // The metrics token is not the admin token.
    expect((await fetch(`${priv.server.origin}${DASHBOARD_PATH}`, { headers: { authorization: 'Bearer scrape-me' } })).status).toBe(401);
  });

  it('answers 200 with basic auth (a browser) or the bearer token, and shows the inbound queue', async () => {
    const page = await fetch(`${priv.server.origin}${DASHBOARD_PATH}`, { headers: AS_ADMIN });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const listed = await fetch(api(priv.server, ''), { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(listed.status).toBe(200);
    const body = (await listed.json()) as { queues: { name: string; readOnlyMode: boolean }[] };
    expect(body.queues.map((q) => q.name)).toEqual([gw.app.inboundQueue.name]);
    expect(body.queues[0]?.readOnlyMode).toBe(true);
    // /metrics beside it, with its own token, as before.
    expect((await fetch(priv.server.url, { headers: { authorization: 'Bearer scrape-me' } })).status).toBe(200);
    expect((await fetch(priv.server.url)).status).toBe(401);
  });

  it('is not on the public port', async () => {
    for (const path of [DASHBOARD_PATH, `${DASHBOARD_PATH}/`, `${DASHBOARD_PATH}/api/queues`]) {
      const res = await fetch(`${publicBase}${path}`, { headers: AS_ADMIN });
      expect(res.status, path).toBe(404);
    }
  });

  it('is read-only by default: its API refuses to retry a failed job (405), which stays failed', async () => {
    const name = encodeURIComponent(gw.app.inboundQueue.name);
    const one = await fetch(api(priv.server, `/${name}/${jobId}/retry`), { method: 'PUT', headers: AS_ADMIN });
    expect(one.status).toBe(405);
    const all = await fetch(api(priv.server, `/${name}/retry/failed`), { method: 'PUT', headers: AS_ADMIN });
    expect(all.status).toBe(405);
    const clean = await fetch(api(priv.server, `/${name}/clean/failed`), { method: 'PUT', headers: AS_ADMIN });
    expect(clean.status).toBe(405);
    expect(await gw.app.inboundQueue.getJobState(jobId)).toBe('failed');
  });

  it('with ADMIN_ACTIONS, the retry goes through', async () => {
    const withActions = await privateListener(gw, { actions: true });
    try {
      const name = encodeURIComponent(gw.app.inboundQueue.name);
      expect((await fetch(api(withActions.server, `/${name}/${jobId}/retry`), { method: 'PUT' })).status).toBe(401);
      const res = await fetch(api(withActions.server, `/${name}/${jobId}/retry`), { method: 'PUT', headers: AS_ADMIN });
      expect(res.status).toBe(204);
      expect(await gw.app.inboundQueue.getJobState(jobId)).toBe('waiting');
    } finally {
      await withActions.server.close();
    }
  });

  it('a dashboard that cannot be registered logs one line, and /metrics still serves', async () => {
    // A path already taken (a duplicate route), and a queue Bull Board does not accept.
    const squatter: PrivateRoutes = { name: 'squatter', register: (app) => void app.get(DASHBOARD_PATH, () => 'mine') };
    for (const broken of [{ before: [squatter] }, { queue: {} as Queue }]) {
      const { server, logs } = await privateListener(gw, broken);
      try {
        expect((await fetch(server.url, { headers: { authorization: 'Bearer scrape-me' } })).status).toBe(200);
        const warnings = logs.records().filter((r) => r.level === 40);
        expect(warnings).toHaveLength(1);
        expect(String(warnings[0]?.msg)).toMatch(/^queue dashboard off: Bull Board could not be registered \(.+\); \/metrics still serves$/);
        expect((await fetch(`${server.origin}${DASHBOARD_PATH}/api/queues`, { headers: AS_ADMIN })).status).toBe(404);
        if (broken.before !== undefined) expect(await (await fetch(`${server.origin}${DASHBOARD_PATH}`)).text()).toBe('mine');
      } finally {
        await server.close();
      }
    }
  });
});

describe('the built gateway with ADMIN_TOKEN', () => {
  let redis: TestRedis;
  let gateway: SpawnedService;
  let publicBase: string;
  let privateBase: string;

  beforeAll(async () => {
    buildIfStale(['services/gateway']);
    redis = await startRedis();
    const [port, metricsPort] = [await freePort(), await freePort()];
    publicBase = `http://127.0.0.1:${port}`;
    privateBase = `http://127.0.0.1:${metricsPort}`;
    gateway = spawnService(
      'services/gateway/dist/main.js',
      gatewayEnv(redis.url, { PORT: String(port), HOST: '127.0.0.1', METRICS_PORT: String(metricsPort), METRICS_HOST: '127.0.0.1', ADMIN_TOKEN: ADMIN, QUEUE_PREFIX: redis.uniquePrefix('gwp') }),
    );
    await gateway.waitForLine(/gateway listening/);
  }, 120_000);
  afterAll(async () => {
    await gateway.stop('SIGTERM');
    await redis.close();
  });

  it('serves the dashboard on the metrics port only, behind the admin token, and says where', async () => {
    const line = JSON.parse(await gateway.waitForLine(/queue dashboard listening/)) as Record<string, unknown>;
    expect(line).toMatchObject({ url: `${privateBase}${DASHBOARD_PATH}`, user: 'admin', actions: false });
    expect(JSON.stringify(gateway.lines)).not.toContain(ADMIN);
    expect((await fetch(`${privateBase}${DASHBOARD_PATH}`)).status).toBe(401);
    expect((await fetch(`${privateBase}${DASHBOARD_PATH}`, { headers: AS_ADMIN })).status).toBe(200);
    expect((await fetch(`${privateBase}/metrics`)).status).toBe(200);
    expect((await fetch(`${publicBase}${DASHBOARD_PATH}`, { headers: AS_ADMIN })).status).toBe(404);
    expect((await fetch(`${publicBase}/healthz`)).status).toBe(200);
  });
});

import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureNdjson, waitFor, type TestRedis } from '@wxrelay/testkit';
import { createLogger, loadGatewayConfig, maskId } from '@wxrelay/shared';
import type { CallbackQuery } from '../src/callback.js';
import { timeoutReason } from '../src/plugins/wechat-timeouts.js';
import type { GatewayApp } from '../src/app.js';
import { AES_KEY, OPENID, TOKEN, buildTestApp, encryptedRequest, gatewayEnv, plainRequest, startRedis, textXml, useGateway } from './support.js';

/** The value of one series in an exposition text (undefined when absent). */
function series(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([^{\s]+)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (m?.[1] !== name) continue;
    const have = (m[2] ?? '').split(',').filter(Boolean);
    if (have.length === wanted.length && wanted.every((w) => have.includes(w))) return Number(m[3]);
  }
  return undefined;
}

const STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized'];

describe('queue gauges and WeChat timeouts', () => {
  const gw = useGateway({ ENQUEUE_TIMEOUT_MS: '500' }, { private: true });
  const scrape = () => gw.app.metrics.registry.metrics();
  const post = (xml: string) => gw.app.inject({ method: 'POST', url: plainRequest(xml).url, payload: xml });

  it('a fresh process exports every operations metric, the labelled ones with their series', async () => {
    const text = await scrape();
    const queue = gw.app.inboundQueue.name;
    expect(series(text, 'wxrelay_gateway_wechat_timeouts_total', { reason: 'slow' })).toBe(0);
    expect(series(text, 'wxrelay_gateway_wechat_timeouts_total', { reason: '5xx' })).toBe(0);
    for (const state of STATES) expect(series(text, 'wxrelay_queue_jobs', { queue, state }), state).toBe(0);
    expect(series(text, 'wxrelay_queue_oldest_waiting_seconds', { queue })).toBe(0);
    for (const name of ['wxrelay_gateway_wechat_timeouts_total', 'wxrelay_queue_jobs', 'wxrelay_queue_oldest_waiting_seconds']) {
      expect(text).toContain(`# TYPE ${name} `);
    }
  });

  it('follows the backlog: waiting and the oldest age as callbacks arrive, completed and failed as a worker takes them, 0 waiting once drained', async () => {
    const queue = gw.app.inboundQueue.name;
    for (const content of ['one', 'fail', 'three']) {
      const before = Date.now();
      expect((await post(textXml({ content }))).body).toBe('success');
      // Distinct job timestamps (the oldest is then one job), without asserting any duration.
      await waitFor(() => Date.now() > before, 1_000, 'the clock to move');
    }
    const waiting = await gw.app.inboundQueue.getJobs(['wait']);
    expect(waiting).toHaveLength(3);
    const oldest = Math.min(...waiting.map((j) => j.timestamp));
    const t0 = Date.now();
    const text = await scrape();
    const t1 = Date.now();
    expect(series(text, 'wxrelay_queue_jobs', { queue, state: 'waiting' })).toBe(3);
    const age = series(text, 'wxrelay_queue_oldest_waiting_seconds', { queue }) ?? -1;
    expect(age).toBeGreaterThanOrEqual((t0 - oldest) / 1000);
    expect(age).toBeLessThanOrEqual((t1 - oldest) / 1000);

    const connection = new Redis(gw.redis.url, { maxRetriesPerRequest: null });
    const worker = new Worker(
      queue,
      (job) => ((job.data as { message: { content?: string } }).message.content === 'fail' ? Promise.reject(new UnrecoverableError('fails on purpose')) : Promise.resolve('ok')),
      { connection, prefix: gw.prefix, concurrency: 1 },
    );
    worker.on('error', () => undefined);
    try {
      await waitFor(async () => {
        const counts = await gw.app.inboundQueue.getJobCounts('wait', 'active', 'completed', 'failed');
        return counts.wait === 0 && counts.active === 0 && counts.completed === 2 && counts.failed === 1;
      }, 15_000, 'the worker to drain the queue');
    } finally {
      await worker.close();
      connection.disconnect();
    }
    const after = await scrape();
    expect(series(after, 'wxrelay_queue_jobs', { queue, state: 'waiting' })).toBe(0);
    expect(series(after, 'wxrelay_queue_jobs', { queue, state: 'active' })).toBe(0);
    expect(series(after, 'wxrelay_queue_jobs', { queue, state: 'completed' })).toBe(2);
    expect(series(after, 'wxrelay_queue_jobs', { queue, state: 'failed' })).toBe(1);
    expect(series(after, 'wxrelay_queue_oldest_waiting_seconds', { queue })).toBe(0);
  });

  it('a callback answered 503 while Redis is down counts reason=5xx; the scrape still answers, with the last backlog values', async () => {
    const queue = gw.app.inboundQueue.name;
    expect(series(await scrape(), 'wxrelay_gateway_wechat_timeouts_total', { reason: '5xx' })).toBe(0);
    await gw.redis.stop();
    try {
      const res = await post(textXml());
      expect(res.statusCode).toBe(503);
      const text = await scrape();
      expect(series(text, 'wxrelay_gateway_wechat_timeouts_total', { reason: '5xx' })).toBe(1);
      expect(series(text, 'wxrelay_gateway_wechat_timeouts_total', { reason: 'slow' })).toBe(0);
      expect(series(text, 'wxrelay_queue_jobs', { queue, state: 'completed' })).toBe(2);
      expect(series(text, 'wxrelay_queue_jobs', { queue, state: 'failed' })).toBe(1);
      // Refusals are not WeChat timeouts: a bad signature is a 403.
      const xml = textXml();
      expect((await gw.app.inject({ method: 'POST', url: plainRequest(xml, { token: 'wrongtoken' }).url, payload: xml })).statusCode).toBe(403);
      expect(series(await scrape(), 'wxrelay_gateway_wechat_timeouts_total', { reason: '5xx' })).toBe(1);
    } finally {
      await gw.redis.start();
    }
  });
});

describe('what WeChat counts as a timeout', () => {
  it('late first (WeChat never saw the answer), then 5xx; a 4xx or an answer within 5 s is not one', () => {
    expect(timeoutReason(5_001, 200)).toBe('slow');
    expect(timeoutReason(6_000, 503)).toBe('slow');
    expect(timeoutReason(12, 503)).toBe('5xx');
    expect(timeoutReason(12, 500)).toBe('5xx');
    expect(timeoutReason(5_000, 200)).toBeUndefined();
    expect(timeoutReason(12, 403)).toBeUndefined();
  });
});

describe('seeing what WeChat sends (LOG_LEVEL=debug)', () => {
  const APP_SECRET = 'gateway-app-secret-never-logged';
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.close();
  });

  async function appAt(level: 'debug' | 'info'): Promise<{ app: GatewayApp; captured: ReturnType<typeof captureNdjson> }> {
    const config = loadGatewayConfig(gatewayEnv(redis.url, { LOG_LEVEL: level, WECHAT_APP_SECRET: APP_SECRET }));
    const captured = captureNdjson();
    const logger = createLogger({ name: 'gateway', level, destination: captured.destination });
    const app = await buildTestApp(config, { logger, queuePrefix: redis.uniquePrefix('gw-debug') });
    return { app, captured };
  }

  const content = '这是一条很长的消息，用来检查调试日志只显示开头的部分，而不是整条消息的全部内容。The end.';

  /** Sends `req` through the real route (which logs the parsed message at debug level). */
  async function deliver(app: GatewayApp, req: { url: string; payload: string }) {
    const res = await app.inject({ method: 'POST', url: req.url, payload: req.payload, headers: { cookie: 'session=cookie-value-never-logged', authorization: 'Bearer auth-value-never-logged' } });
    expect(res.body).toBe('success');
    return Object.fromEntries(new URL(req.url, 'http://x').searchParams) as unknown as CallbackQuery;
  }

  it('logs the query (signatures shortened, openid masked) and headers, then the parsed message; never a secret or the raw openid', async () => {
    const { app, captured } = await appAt('debug');
    try {
      const plain = plainRequest(textXml({ content }));
      const plainQuery = await deliver(app, plain);
      const safe = encryptedRequest(textXml({ content: 'hi' }));
      const safeQuery = await deliver(app, safe);

      const received = captured.lines().filter((l) => l.msg === 'callback received');
      expect(received).toHaveLength(2);
      expect(received.every((l) => l.level === 20)).toBe(true);
      expect(received[0]).toMatchObject({
        method: 'POST',
        path: '/wx',
        query: { signature: `${plainQuery.signature.slice(0, 6)}…`, openid: maskId(OPENID), timestamp: plainQuery.timestamp, nonce: plainQuery.nonce },
      });
      expect(received[1]).toMatchObject({
        query: {
          signature: `${safeQuery.signature.slice(0, 6)}…`,
          msg_signature: `${safeQuery.msg_signature?.slice(0, 6)}…`,
          openid: maskId(OPENID),
          encrypt_type: 'aes',
          timestamp: safeQuery.timestamp,
          nonce: safeQuery.nonce,
        },
      });
      const headers = received[0]?.headers as Record<string, unknown>;
      expect(headers['user-agent']).toBeDefined();
      expect(headers).not.toHaveProperty('cookie');
      expect(headers).not.toHaveProperty('authorization');

      const messages = captured.lines().filter((l) => l.msg === 'callback message');
      expect(messages).toHaveLength(2);
      expect(messages[0]).toMatchObject({ mode: 'plain', message: { kind: 'text', msgType: 'text', openid: maskId(OPENID), content: `${Array.from(content).slice(0, 40).join('')}…` } });
      expect((messages[0]?.message as { msgId?: unknown }).msgId).toEqual(expect.any(String));
      expect(messages[1]).toMatchObject({ mode: 'safe', message: { kind: 'text', openid: maskId(OPENID), content: 'hi' } });

      const text = captured.text();
      for (const secret of [OPENID, plainQuery.signature, safeQuery.signature, safeQuery.msg_signature ?? '', TOKEN, AES_KEY, APP_SECRET, safe.encrypt, 'cookie-value-never-logged', 'auth-value-never-logged', content]) {
        expect(secret).not.toBe('');
        expect(text).not.toContain(secret);
      }
    } finally {
      await app.close();
    }
  });

  it('logs nothing new at info level', async () => {
    const { app, captured } = await appAt('info');
    try {
      // What startup wrote (the addBulk run warns about its path) is not the callbacks'.
      const before = captured.lines().length;
      await deliver(app, plainRequest(textXml({ content })));
      await deliver(app, encryptedRequest(textXml()));
      expect(captured.lines().slice(before)).toEqual([]);
    } finally {
      await app.close();
    }
  });
});

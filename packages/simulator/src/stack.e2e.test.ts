import { buildIfStale, freePort, spawnService, startRedis, type SpawnedService, type TestRedis } from '@wxrelay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openidFor, startSimulator, type Simulator } from './simulator-server.js';
import { runCliProcess } from './test-support/cli-process.js';

const APP = { appId: 'wx5823bf96d3bd56c7', appSecret: '0123456789abcdef0123456789abcdef' } as const;
const TOKEN = 'stacktoken';
const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const ACCOUNT = 'gh_5ac4e2e00001';
const WELCOME = '欢迎来到 wxrelay e2e';

let redis: TestRedis;
let gateway: SpawnedService;
let worker: SpawnedService;
let sim: Simulator;

beforeAll(async () => {
  buildIfStale(['packages/simulator', 'services/gateway', 'services/worker']);
  // Private: the worker must see only this test's jobs.
  redis = await startRedis({ private: true });
  const gatewayPort = await freePort();
  sim = await startSimulator({
    gatewayUrl: `http://127.0.0.1:${gatewayPort}/wx`,
    token: TOKEN,
    ...APP,
    encodingAesKey: AES_KEY,
    mode: 'safe',
    account: ACCOUNT,
  });
  const common = { WECHAT_APP_ID: APP.appId, REDIS_URL: redis.url, METRICS_PORT: '0', LOG_LEVEL: 'info' };
  gateway = spawnService('services/gateway/dist/main.js', {
    ...common,
    WECHAT_TOKEN: TOKEN,
    WECHAT_ENCODING_AES_KEY: AES_KEY,
    PORT: String(gatewayPort),
    HOST: '127.0.0.1',
  });
  worker = spawnService('services/worker/dist/main.js', {
    ...common,
    WECHAT_APP_SECRET: APP.appSecret,
    WECHAT_API_BASE_URL: sim.url,
    WELCOME_MESSAGE: WELCOME,
  });
  await gateway.waitForLine(/gateway listening/);
  await worker.waitForLine(/worker started/);
}, 180_000);

afterAll(async () => {
  await worker?.stop();
  await gateway?.stop();
  await sim?.close();
  await redis?.close();
});

describe('the whole stack: simulator → real gateway (safe mode) → Redis → real worker → fake WeChat API', () => {
  it('pnpm sim send subscribe prints the gateway ack, then the welcome the worker sends', async () => {
    const cli = runCliProcess(['send', 'subscribe', '--user', 'alice', '--sim', sim.url, '--wait', '60']);
    await cli.waitForOutput(new RegExp(`gateway: success \\(HTTP 200, 1 try\\)\\n(bot is typing…\\n)?bot: ${WELCOME}`), 60_000);
    cli.proc.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    expect(sim.api.deliveries.filter((d) => d.touser === openidFor(ACCOUNT, 'alice'))).toHaveLength(1);
  }, 90_000);

  it('a text gets a customer-service answer for that user only', async () => {
    const bob = openidFor(ACCOUNT, 'bob');
    const result = await sim.send({ user: 'bob', message: { type: 'text', content: '你好 e2e' } });
    expect(result).toMatchObject({ outcome: 'ack', tries: 1 });
    await expect.poll(() => sim.api.deliveries.filter((d) => d.touser === bob).length, { timeout: 60_000 }).toBeGreaterThan(0);
    expect(sim.api.deliveries.find((d) => d.touser === bob)).toMatchObject({ msgtype: 'text' });
  }, 90_000);
});

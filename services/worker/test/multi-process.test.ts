import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { REPO_ROOT, buildIfStale, startRedis, type TestRedis } from '@wxrelay/testkit';
import { startFakeLlm, startFakeWechatApi, type FakeLlm, type FakeWechatApi } from '@wxrelay/simulator';
import { waitFor } from './helpers.js';
import { enqueue, producer, settled, textMessage } from './support.js';

/*
 * The worker as it runs in production: `node services/worker/dist/main.js`, configured by env,
 * several processes against one Redis. The build is refreshed first when a source is newer.
 */

const ROOT = REPO_ROOT;
const MAIN = join(ROOT, 'services/worker/dist/main.js');
const APP_ID = 'wxmultiproc01';
const APP_SECRET = 'multi-process-secret';

interface Proc {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

let redis: TestRedis;
let wechat: FakeWechatApi;
let llm: FakeLlm;
let prefix: string;
let queue: Queue;
let closeProducer: () => Promise<void>;
const procs: Proc[] = [];

function spawnWorker(extra: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [MAIN], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      WECHAT_APP_ID: APP_ID,
      WECHAT_APP_SECRET: APP_SECRET,
      WECHAT_API_BASE_URL: wechat.url,
      REDIS_URL: redis.url,
      QUEUE_PREFIX: prefix,
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
      WORKER_CONCURRENCY: '50',
      WORKER_LOCK_DURATION_MS: '2000',
      WORKER_STALLED_INTERVAL_MS: '1000',
      ...extra,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const proc = { child, output: () => out, exited };
  procs.push(proc);
  return proc;
}

beforeAll(async () => {
  buildIfStale(['services/worker']);
  redis = await startRedis();
  wechat = await startFakeWechatApi({ appId: APP_ID, appSecret: APP_SECRET });
  llm = await startFakeLlm({});
}, 120_000);
afterAll(async () => {
  await wechat?.close();
  await llm?.close();
  await redis?.close();
});
beforeEach(async () => {
  wechat.reset();
  llm.reset();
  llm.setDelay(0);
  prefix = redis.uniquePrefix('mp');
  const c = new Redis(redis.url);
  await c.del(`wx:token:${APP_ID}`);
  c.disconnect();
  const p = producer(redis.url, prefix);
  queue = p.queue;
  closeProducer = async () => {
    await p.queue.close();
    p.connection.disconnect();
  };
});
afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
  }
  await closeProducer();
});

function userSays(openid: string, content: string): Promise<string> {
  wechat.userInteracted(openid, 'message');
  return enqueue(queue, textMessage(openid, content));
}

describe('worker processes (node dist/main.js)', () => {
  it('two processes, 100 messages: one token fetch, every message answered once and in order per user', async () => {
    const a = spawnWorker();
    const b = spawnWorker();
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) ids.push(await userSays(`user-${i % 50}`, `message ${i}`));
    await wechat.waitForDeliveries(100, 60_000);
    for (const id of ids) expect((await settled(queue, id)).state).toBe('completed');
    expect(wechat.deliveries).toHaveLength(100);
    expect(wechat.tokenFetches).toHaveLength(1);
    for (let u = 0; u < 50; u++) {
      const said = wechat.deliveries.filter((d) => d.touser === `user-${u}`).map((d) => (d.body.text as { content: string }).content.split('：')[1]);
      expect(said).toEqual([`message ${u}`, `message ${u + 50}`]);
    }
    for (const p of [a, b]) {
      expect(p.output()).toContain('worker started');
      expect(p.output()).not.toContain(APP_SECRET);
    }
  }, 90_000);

  it('a worker SIGKILLed mid-LLM-call: another worker delivers the reply, once', async () => {
    llm.setDelay(3_000);
    const first = spawnWorker({ LLM_BASE_URL: llm.url });
    const id = await userSays('user-crash', '你好');
    await waitFor(() => llm.requests.length >= 1, 30_000, 'the first LLM call');
    first.child.kill('SIGKILL');
    await first.exited;
    llm.setDelay(0);
    spawnWorker({ LLM_BASE_URL: llm.url });
    expect((await settled(queue, id, 60_000)).state).toBe('completed');
    expect(wechat.deliveries.map((d) => d.touser)).toEqual(['user-crash']);
    expect((wechat.deliveries[0]!.body.text as { content: string }).content).toBe('Echo: 你好');
  }, 90_000);

  it('SIGTERM: stops taking jobs, finishes the one in flight, exits 0', async () => {
    llm.setDelay(1_500);
    const w = spawnWorker({ LLM_BASE_URL: llm.url });
    const id = await userSays('user-term', 'bye');
    await waitFor(() => llm.requests.length >= 1, 30_000, 'the LLM call');
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    expect((await settled(queue, id)).state).toBe('completed');
    expect(wechat.deliveries).toHaveLength(1);
    expect(w.output()).toContain('worker stopped');
  }, 60_000);
});

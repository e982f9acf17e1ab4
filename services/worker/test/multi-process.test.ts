import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { REPO_ROOT, buildIfStale, startRedis, waitFor, type TestRedis } from '@wxrelay/testkit';
import { startFakeLlm, startFakeWechatApi, type FakeLlm, type FakeWechatApi } from '@wxrelay/simulator';
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

/** `extra` values replace the defaults; an `undefined` one unsets the variable (the service's default then). */
function spawnWorker(extra: Record<string, string | undefined> = {}): Proc {
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
    // Both up before the first message: on a busy machine one could otherwise answer all 100
    // before the other has logged anything.
    for (const p of [a, b]) await waitFor(() => p.output().includes('worker started'), 30_000, 'both workers to start');
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) ids.push(await userSays(`user-${i % 50}`, `message ${i}`));
    for (const id of ids) expect((await settled(queue, id, 60_000)).state).toBe('completed');
    // A user's second message already queued when the first takes its turn is answered with it,
    // in one send: 50 to 100 sends, every message answered exactly once and in order.
    expect(wechat.deliveries.length).toBeGreaterThanOrEqual(50);
    expect(wechat.deliveries.length).toBeLessThanOrEqual(100);
    expect(wechat.tokenFetches).toHaveLength(1);
    for (let u = 0; u < 50; u++) {
      const texts = wechat.deliveries.filter((d) => d.touser === `user-${u}`).map((d) => (d.body.text as { content: string }).content);
      const said = texts.flatMap((t) => [...t.matchAll(/你说：(message \d+)/g)].map((m) => m[1]));
      expect(said).toEqual([`message ${u}`, `message ${u + 50}`]);
    }
    for (const p of [a, b]) {
      expect(p.output()).toContain('worker started');
      expect(p.output()).not.toContain(APP_SECRET);
    }
  }, 90_000);

  it('two workers on one host, both with the default metrics port: both serve, the second says metrics are off, and one SIGKILLed leaves the other answering', async () => {
    const defaults = { METRICS_PORT: undefined, LLM_BASE_URL: llm.url, WORKER_CONCURRENCY: '1' };
    const started = (p: Proc) => () => p.output().includes('worker started');
    const replies = (p: Proc) => p.output().split('\n').filter((l) => l.includes('"msg":"replied"')).length;
    const a = spawnWorker(defaults);
    await waitFor(started(a), 30_000, 'the first worker to start');
    const b = spawnWorker(defaults);
    await waitFor(started(b), 30_000, 'the second worker to start');
    // The second could not have the port (the first holds it): one warning line, and it goes on.
    const warning = 'in use: metrics are off for this process; set METRICS_PORT to a free port, or 0 to turn them off';
    expect(b.output().split('\n').filter((l) => l.includes(warning))).toHaveLength(1);
    expect(b.output()).toContain('metrics port 9465 in use');

    // Each takes one job at a time and the LLM holds each call: the second message can only be
    // taken by the worker that is not busy with the first. Both answer.
    llm.setDelay(3_000);
    const first = await userSays('user-port-1', 'one');
    await waitFor(() => llm.requests.length >= 1, 30_000, 'the first LLM call');
    const second = await userSays('user-port-2', 'two');
    await waitFor(() => llm.requests.length >= 2, 30_000, 'the second LLM call');
    for (const id of [first, second]) expect((await settled(queue, id, 60_000)).state).toBe('completed');
    await waitFor(() => replies(a) + replies(b) >= 2, 10_000, 'both reply log lines');
    expect([replies(a), replies(b)]).toEqual([1, 1]);
    for (const p of [a, b]) expect(p.child.exitCode).toBeNull();

    // One of them dies: the other still answers.
    llm.setDelay(0);
    a.child.kill('SIGKILL');
    await a.exited;
    const third = await userSays('user-port-3', 'three');
    expect((await settled(queue, third, 60_000)).state).toBe('completed');
    expect(wechat.deliveries.map((d) => d.touser).sort()).toEqual(['user-port-1', 'user-port-2', 'user-port-3']);
    expect(b.child.exitCode).toBeNull();
  }, 120_000);

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

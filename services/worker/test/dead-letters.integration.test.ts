import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import type { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildIfStale, REPO_ROOT, startRedis, waitFor, type TestRedis } from '@wxrelay/testkit';
import { startFakeLlm, startFakeWechatApi, type FakeLlm, type FakeWechatApi } from '@wxrelay/simulator';
import { createWorkerMetrics } from '../src/metrics.js';
import type { InboundJobData } from '../src/pipeline/processor.js';
import { runCli } from '../src/cli/run.js';
import type { DeadLetterDetail, DeadLetterSummary } from '../src/cli/dead-letters.js';
import { buildWorker } from '../src/worker.js';
import { captureLogger, enqueue, producer, settled, textMessage, workerConfig } from './support.js';

/**
 * `wxrelay dlq` against real Redis, a real worker (built as main.ts builds it) and the fake WeChat
 * API; `list` and `show` run the built command line as a child process, as an operator would.
 */

const APP_ID = 'wxtestapp0001';
const APP_SECRET = 'test-app-secret-value';
const SEND = '/cgi-bin/message/custom/send' as const;
/** An answer of several parts of ≤ 64 bytes, each different. */
const LONG = Array.from({ length: 24 }, (_, i) => `w${String(i).padStart(2, '0')}-abcdef`).join(' ');

let redis: TestRedis;
let wechat: FakeWechatApi;
let llm: FakeLlm;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  buildIfStale(['services/worker']);
  redis = await startRedis();
  wechat = await startFakeWechatApi({ appId: APP_ID, appSecret: APP_SECRET });
  llm = await startFakeLlm({});
});
afterAll(async () => {
  await wechat.close();
  await llm.close();
  await redis.close();
});
beforeEach(() => {
  wechat.reset();
  llm.reset();
  llm.setDelay(0);
  // The user's last words decide the answer: "long" gets a four-part one.
  llm.setReply((messages) => {
    const last = messages.at(-1)?.content;
    return last === 'long' ? LONG : `answer to ${String(last)}`;
  });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Harness {
  readonly queue: Queue;
  readonly prefix: string;
  readonly env: Record<string, string>;
}

async function start(): Promise<Harness> {
  const prefix = redis.uniquePrefix('dlq');
  const p = producer(redis.url, prefix);
  cleanups.push(async () => {
    await p.queue.close();
    p.connection.disconnect();
  });
  const env = { REDIS_URL: redis.url, QUEUE_PREFIX: prefix };
  const config = workerConfig({
    ...env,
    WECHAT_APP_ID: APP_ID,
    WECHAT_APP_SECRET: APP_SECRET,
    WECHAT_API_BASE_URL: wechat.url,
    WORKER_CONCURRENCY: '10',
    WORKER_LOCK_DURATION_MS: '5000',
    WORKER_STALLED_INTERVAL_MS: '5000',
    WORKER_SHUTDOWN_TIMEOUT_MS: '5000',
    CS_CHUNK_BYTES: '64',
    LLM_BASE_URL: llm.url,
    LLM_MODEL: 'test-model',
    LLM_TIMEOUT_MS: '10000',
  });
  const worker = await buildWorker(config, {
    log: captureLogger('debug').log,
    metrics: createWorkerMetrics({ defaultMetrics: false }),
    stateAppId: redis.uniquePrefix('app'),
    typingIntervalMs: 200,
    turnRetryDelayMs: 50,
  });
  worker.start();
  cleanups.push(() => worker.close());
  return { queue: p.queue, prefix, env };
}

/**
 * What the user writes (their 48 h window opens), enqueued as the gateway does. CreateTime is to
 * the second and rounds the window's start down, so messages written faster than one a second
 * would be charged the replies sent just before them: a CreateTime a little ahead makes the
 * ledger take the gateway's `receivedAt` (to the ms) instead.
 */
async function userSays(h: Harness, openid: string, content: string): Promise<string> {
  wechat.userInteracted(openid, 'message');
  return enqueue(h.queue, { ...textMessage(openid, content), createTime: Math.floor(Date.now() / 1000) + 2 });
}

const texts = (openid: string) => wechat.deliveries.filter((d) => d.touser === openid).map((d) => (d.body.text as { content: string }).content);
const sendCodes = () => wechat.calls.filter((c) => c.path === SEND).map((c) => c.errcode);

interface CliRun {
  readonly code: number | string;
  readonly stdout: string;
  readonly stderr: string;
}

/** The built command line, `node services/worker/dist/cli/main.js …`, as `pnpm wxrelay` runs it. */
function cliProcess(h: Harness, args: readonly string[]): Promise<CliRun> {
  const proc = spawn(process.execPath, [resolve(REPO_ROOT, 'services/worker/dist/cli/main.js'), ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', ...h.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((res) => proc.once('close', (code, signal) => res({ code: code ?? signal ?? -1, stdout, stderr })));
}

/** The same command line in this process (stdin not a terminal unless `tty`). */
async function cli(h: Harness, args: readonly string[], opts: { tty?: boolean; answer?: string } = {}): Promise<CliRun> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = Object.assign(new PassThrough(), { isTTY: opts.tty === true });
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => {
    out += c.toString();
    if (opts.answer !== undefined && out.includes('[y/N]')) stdin.write(`${opts.answer}\n`);
  });
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await runCli(args, { env: h.env, stdout, stderr, stdin });
  return { code, stdout: out, stderr: err };
}

/** A dead letter: part 1 of a four-part answer accepted, part 2 refused for good (48001). */
async function partlySentDeadLetter(h: Harness, openid: string): Promise<string> {
  wechat.inject({ path: SEND, delayMs: 0, times: 1 }); // part 1 goes through
  wechat.inject({ path: SEND, errcode: 48001, times: 1 });
  const id = await userSays(h, openid, 'long');
  expect((await settled(h.queue, id)).state).toBe('failed');
  return id;
}

describe('wxrelay dlq', () => {
  it('lists a dead letter masked with its errcode; retry sends the parts not sent, each exactly once', async () => {
    const h = await start();
    const openid = 'oUSERabcdef0123456XY';
    const id = await partlySentDeadLetter(h, openid);
    expect(texts(openid)).toHaveLength(1);
    const failed = (await h.queue.getJob(id))!;
    const progress = (failed.data as InboundJobData).progress!;
    // The failure step recorded why and that WeChat refused the part (not in doubt).
    expect(progress).toMatchObject({ sent: 1, notSent: true, failed: { code: 'WX_ERR_API', errcode: 48001 } });
    const planned = (progress.parts ?? []).map((p) => (p as { text: { content: string } }).text.content);
    expect(planned.length).toBeGreaterThanOrEqual(3);
    expect(texts(openid)).toEqual(planned.slice(0, 1));

    const list = await cliProcess(h, ['dlq', 'list', '--json']);
    expect(list.code).toBe(0);
    const rows = JSON.parse(list.stdout) as DeadLetterSummary[];
    expect(rows).toEqual([expect.objectContaining({ id, user: 'oUSE…XY', kind: 'text', errcode: 48001, attempts: 1, code: 'WX_ERR_API' })]);
    expect(rows[0]!.reason).toContain('48001');
    expect(list.stdout).not.toContain(openid);

    const table = await cliProcess(h, ['dlq', 'list']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+USER\s+KIND\s+ERRCODE\s+ATTEMPTS\s+AGE\s+REASON/);
    expect(table.stdout).toContain(id);
    expect(table.stdout).toContain('oUSE…XY');
    expect(table.stdout).not.toContain(openid);

    const show = await cliProcess(h, ['dlq', 'show', id, '--json']);
    expect(show.code).toBe(0);
    const shown = JSON.parse(show.stdout) as DeadLetterDetail;
    expect(shown).toMatchObject({ id, user: 'oUSE…XY', content: 'long', errcode: 48001, attempts: 1, maxAttempts: 6, progress: { parts: planned.length, sent: 1, answerSaved: true } });
    expect(show.stdout).not.toContain(openid);
    const showText = await cliProcess(h, ['dlq', 'show', id]);
    expect(showText.stdout).toContain(`1 of ${planned.length} sent`);

    // WeChat recovered (nothing injected any more).
    const retried = await cli(h, ['dlq', 'retry', id]);
    expect(retried).toMatchObject({ code: 0, stdout: `retried 1 dead letter(s): ${id}\n` });
    const { state, job } = await settled(h.queue, id);
    expect(state).toBe('completed');
    expect(job.attemptsMade).toBe(1); // a fresh attempt budget (BullMQ counts the completed attempt too)
    expect(llm.requests).toHaveLength(1); // the saved answer, not a new one
    // Part 1 once (not again), part 2 once after the 48001, the rest once each, in order.
    expect(texts(openid)).toEqual(planned);
    expect(sendCodes()).toEqual([0, 48001, ...planned.slice(1).map(() => 0)]);
    expect((await cli(h, ['dlq', 'list', '--json'])).stdout).toBe('[]\n');
    // Not a dead letter any more: nothing to retry.
    expect((await cli(h, ['dlq', 'retry', id])).code).toBe(1);
  });

  it('a plain job.retry (Bull Board) of a job whose part spent its retry budget gives the part a fresh one', async () => {
    const h = await start();
    const openid = 'oBUDGETuser000000zz';
    wechat.inject({ path: SEND, errcode: -1, times: 3 });
    const id = await userSays(h, openid, 'hi');
    const { state, job } = await settled(h.queue, id);
    expect(state).toBe('failed');
    expect(job.failedReason).toMatch(/^-1: part 1 failed 3 times/);
    const rows = JSON.parse((await cli(h, ['dlq', 'list', '--errcode', '-1', '--json'])).stdout) as DeadLetterSummary[];
    expect(rows.map((r) => [r.id, r.errcode, r.code, r.attempts])).toEqual([[id, -1, 'WX_ERR_RETRIES_SPENT', 3]]);

    // One more -1 after the retry: with the old count (3 of 2 allowed) the job would give up at once.
    wechat.inject({ path: SEND, errcode: -1, times: 1 });
    await job.retry('failed');
    expect((await settled(h.queue, id)).state).toBe('completed');
    expect(sendCodes()).toEqual([-1, -1, -1, -1, 0]);
    expect(texts(openid)).toEqual(['answer to hi']);
  });

  it('a retried dead letter takes its turn again, behind the message of its user being answered', async () => {
    const h = await start();
    const openid = 'oTURNuser0000000001';
    const a = await partlySentDeadLetter(h, openid);
    // The failed job released the turn: the next message goes on.
    const b = await userSays(h, openid, 'second');
    expect((await settled(h.queue, b)).state).toBe('completed');
    // A third message is being answered (slowly) when the dead letter is retried: it waits its turn.
    llm.setDelay(1_500);
    const c = await userSays(h, openid, 'third');
    await waitFor(() => llm.requests.length >= 3, 10_000, 'the third answer to start');
    expect((await cli(h, ['dlq', 'retry', a])).code).toBe(0);
    expect((await settled(h.queue, a)).state).toBe('completed');
    const cs = await settled(h.queue, c);
    expect([cs.state, cs.job.failedReason]).toEqual(['completed', undefined]);
    const planned = ((await h.queue.getJob(a))!.data as InboundJobData).progress!.parts!.map((p) => (p as { text: { content: string } }).text.content);
    // The retried rest comes after the answer being sent when it was retried, each part once.
    expect(texts(openid)).toEqual([planned[0], 'answer to second', 'answer to third', ...planned.slice(1)]);
  });

  it('--errcode picks only the matching dead letters; drop removes them (asking on a terminal)', async () => {
    const h = await start();
    wechat.inject({ path: SEND, errcode: 48001, times: 1 });
    const perm = await userSays(h, 'oPERMuser000000001', 'one');
    expect((await settled(h.queue, perm)).state).toBe('failed');
    wechat.inject({ path: SEND, errcode: 43004, times: 1 });
    const unfollowed = await userSays(h, 'oGONEuser000000002', 'two');
    expect((await settled(h.queue, unfollowed)).state).toBe('failed');

    const only = JSON.parse((await cliProcess(h, ['dlq', 'list', '--errcode', '43004', '--json'])).stdout) as DeadLetterSummary[];
    expect(only.map((r) => r.id)).toEqual([unfollowed]);
    expect((JSON.parse((await cli(h, ['dlq', 'list', '--since', '1h', '--json'])).stdout) as unknown[]).length).toBe(2);
    expect((JSON.parse((await cli(h, ['dlq', 'list', '--since', new Date(Date.now() + 60_000).toISOString(), '--json'])).stdout) as unknown[]).length).toBe(0);

    // Not on a terminal: drop wants --yes. On one, it asks.
    expect((await cli(h, ['dlq', 'drop', '--errcode', '48001'])).code).toBe(2);
    const declined = await cli(h, ['dlq', 'drop', '--errcode', '48001'], { tty: true, answer: 'n' });
    expect(declined).toMatchObject({ code: 0, stdout: expect.stringContaining('nothing dropped') as string });
    expect(await h.queue.getJobState(perm)).toBe('failed');
    const dropped = await cli(h, ['dlq', 'drop', '--errcode', '48001'], { tty: true, answer: 'y' });
    expect(dropped.stdout).toContain(`dropped 1 dead letter(s): ${perm}`);
    expect(await h.queue.getJob(perm)).toBeUndefined();
    expect(await h.queue.getJobState(unfollowed)).toBe('failed');
    expect((await cli(h, ['dlq', 'show', perm])).code).toBe(1);

    // A retry by filter retries only the matching ones.
    expect((await cli(h, ['dlq', 'retry', '--errcode', '48001'])).stdout).toBe('retried 0 dead letter(s)\n');
    expect((await cli(h, ['dlq', 'drop', '--all', '--yes'])).stdout).toBe(`dropped 1 dead letter(s): ${unfollowed}\n`);
    expect(await h.queue.getFailedCount()).toBe(0);
  });

  it('bad input: a usage error (exit 2) with the usage, never a stack trace', async () => {
    const h = await start();
    for (const args of [['dlq', 'frobnicate'], ['dlq', 'retry'], ['dlq', 'retry', 'x', '--all'], ['dlq', 'list', '--since', 'yesterday'], ['dlq', 'list', '--errcode', 'abc'], ['dlq', 'show'], ['dlq', 'list', '--bogus']]) {
      const run = await cli(h, args);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toContain('Usage: pnpm wxrelay dlq');
      expect(run.stderr).not.toMatch(/\n\s+at /);
    }
    const unreachable = await cliProcess({ ...h, env: { ...h.env, REDIS_URL: 'redis://127.0.0.1:1' } }, ['dlq', 'list']);
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toMatch(/^wxrelay: cannot reach Redis: .*ECONNREFUSED/);
    expect(unreachable.stderr).not.toMatch(/\n\s+at /);
    const missing = await cliProcess(h, ['dlq', 'show', 'msg-none']);
    expect(missing).toMatchObject({ code: 1, stderr: 'no dead letter "msg-none"\n' });
  });
});

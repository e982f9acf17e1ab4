/**
 * The Redis round trips one job costs the worker beyond BullMQ's own (fetch, completion, lock
 * renewal), counted on a private Redis: MONITOR lists what the worker's connection ran, the
 * connection itself says which commands were sent together (no reply awaited in between: one
 * round trip). Not a timing test: a command or a round trip added to the path fails it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_JOB_OPTIONS, JOB_NAMES, type InboundJobPayload } from '@wxrelay/shared';
import { startRedis, waitFor, type TestRedis } from '@wxrelay/testkit';
import { startFakeLlm, startFakeWechatApi, type FakeLlm, type FakeWechatApi } from '@wxrelay/simulator';
import { createWorkerMetrics } from '../src/metrics.js';
import type { JobResult } from '../src/pipeline/processor.js';
import { buildWorker, type RunningWorker } from '../src/worker.js';
import { describeRoundTrips, traceConnection, type RoundTrip, type SeenCommand } from './redis-trace.js';
import { captureLogger, enqueue, nextMsgId, producer, settled, textMessage, workerConfig, type Message } from './support.js';

const APP_ID = 'wxtestapp0001';
const APP_SECRET = 'test-app-secret-value';
const PRINT = process.env.WXRELAY_PRINT_ROUND_TRIPS === '1';

let redis: TestRedis;
let wechat: FakeWechatApi;
let llm: FakeLlm;

beforeAll(async () => {
  // Private: MONITOR sees only this file's traffic.
  redis = await startRedis({ private: true });
  wechat = await startFakeWechatApi({ appId: APP_ID, appSecret: APP_SECRET });
  llm = await startFakeLlm({});
});
afterAll(async () => {
  await wechat?.close();
  await llm?.close();
  await redis?.close();
});

function rulesFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'wxrelay-rt-')), 'rules.yaml');
  writeFileSync(file, 'rules:\n  - match: { msgType: text, content: 帮助 }\n    reply: 回复“人工”转接客服\n');
  return file;
}

interface Traced {
  readonly server: SeenCommand[];
  readonly roundTrips: RoundTrip[];
}

/** One worker (concurrency 1: one job at a time, so each job's commands are its own), warmed up. */
async function tracedWorker(env: Record<string, string>, turnRetryDelayMs = 50) {
  const prefix = redis.uniquePrefix('rt');
  const p = producer(redis.url, prefix);
  const config = workerConfig({
    WECHAT_APP_ID: APP_ID,
    WECHAT_APP_SECRET: APP_SECRET,
    WECHAT_API_BASE_URL: wechat.url,
    REDIS_URL: redis.url,
    QUEUE_PREFIX: prefix,
    WORKER_CONCURRENCY: '1',
    WORKER_LOCK_DURATION_MS: '60000',
    WORKER_STALLED_INTERVAL_MS: '60000',
    WORKER_SHUTDOWN_TIMEOUT_MS: '5000',
    REPLY_RULES_FILE: rulesFile(),
    ...env,
  });
  const worker: RunningWorker = await buildWorker(config, {
    log: captureLogger('info').log,
    metrics: createWorkerMetrics({ defaultMetrics: false }),
    stateAppId: redis.uniquePrefix('app'),
    turnRetryDelayMs,
  });
  worker.start();
  // Warm up: the token is fetched and cached, every script is loaded (EVALSHA hits from now on).
  const warm = [textMessage('u-warm', '帮助'), textMessage('u-warm', 'hello')];
  for (const m of warm) {
    wechat.userInteracted('u-warm', 'message');
    await settled(p.queue, await enqueue(p.queue, m));
  }
  await new Promise((r) => setTimeout(r, 100));
  const trace = traceConnection(worker.redis, redis.url);
  return {
    queue: p.queue,
    worker,
    /** Runs `act` (which enqueues and waits for its jobs) while tracing the worker's connection. */
    async traced(act: () => Promise<void>): Promise<Traced> {
      await trace.start();
      await act();
      // Let the completion (sent after the job's state is visible) land.
      await new Promise((r) => setTimeout(r, 200));
      return trace.stop();
    },
    async close() {
      await trace.close();
      await worker.close();
      await p.queue.close();
      p.connection.disconnect();
    },
  };
}

/** Round trips that BullMQ does not make anyway. */
const ours = (t: Traced) => t.roundTrips.filter((r) => !r.bullmq);
/** Each of those as the commands it carried. */
const ourTrips = (t: Traced) => ours(t).map((r) => r.commands.map((c) => c.name).join(' + '));
/** What Redis ran for the worker's connection, BullMQ's own commands left out. */
const ourCommands = (t: Traced) => t.server.filter((c) => !c.bullmq).map((c) => c.name);
/** The round trips that carry BullMQ's completion, as the commands they carried. */
const completions = (t: Traced) => t.roundTrips.filter((r) => r.commands.some((c) => c.name.startsWith('moveToFinished'))).map((r) => r.commands.map((c) => c.name).join(' + '));
const COMPLETION = 'wxJobFinish + moveToFinished (BullMQ)';
/** The chatbot's memory (the LLM handler's own reads and writes, replies/memory.ts). */
const MEMORY = ['lrange', 'multi + rpush + ltrim + expire + exec'];

function report(title: string, t: Traced): void {
  if (!PRINT) return;
  console.log(`\n## ${title}\nserver (MONITOR): ${t.server.map((c) => c.name).join(', ')}\nround trips:\n  ${describeRoundTrips(t.roundTrips).join('\n  ')}\nbeyond BullMQ's: ${ours(t).length}`);
}

async function userSays(queue: Parameters<typeof enqueue>[0], openid: string, content: string): Promise<string> {
  wechat.userInteracted(openid, 'message');
  return enqueue(queue, textMessage(openid, content));
}

describe('Redis round trips per job', () => {
  it('(a) a keyword rule answered in one customer-service message', async () => {
    const w = await tracedWorker({});
    try {
      const t = await w.traced(async () => {
        expect((await settled(w.queue, await userSays(w.queue, 'u-a', '帮助'))).state).toBe('completed');
      });
      report('(a) keyword rule, one part, customer-service', t);
      // Two round trips of the worker's own: the turn (with the window) and the plan (quota +
      // progress under the lock). The release rides on BullMQ's completion.
      expect(ourTrips(t)).toEqual(['wxJobStart', 'wxJobPlan']);
      expect(completions(t)).toHaveLength(1);
      expect(completions(t)[0]).toContain(COMPLETION);
      expect(ourCommands(t)).toEqual(['wxJobStart', 'wxJobPlan', 'wxJobFinish']);
    } finally {
      await w.close();
    }
  });

  it('(b) the same with two messages queued behind it (answered together)', async () => {
    const w = await tracedWorker({});
    try {
      const t = await w.traced(async () => {
        const jobs = [1, 2, 3].map(() => {
          wechat.userInteracted('u-b', 'message');
          const message: Message = textMessage('u-b', '帮助');
          const dedupKey = 'msgId' in message ? String(message.msgId) : nextMsgId();
          const payload: InboundJobPayload = { v: 1, dedupKey, mode: 'plain', receivedAt: Date.now(), message };
          return { name: JOB_NAMES.inbound, data: payload, opts: { ...DEFAULT_JOB_OPTIONS, jobId: `msg-${dedupKey}` } };
        });
        await w.queue.addBulk(jobs);
        const results = await Promise.all(jobs.map((j) => settled(w.queue, j.opts.jobId)));
        expect(results.map((r) => (r.job.returnvalue as JobResult | undefined)?.outcome)).toEqual(['replied', 'answered-together', 'answered-together']);
      });
      report('(b) keyword rule with 2 absorbed (3 jobs)', t);
      // The first job: turn + plan (which marks the other two); each of those: its turn, which finds the marker.
      expect(ourTrips(t)).toEqual(['wxJobStart', 'wxJobPlan', 'wxJobStart', 'wxJobStart']);
      expect(completions(t)).toHaveLength(3);
      for (const c of completions(t)) expect(c).toContain(COMPLETION);
    } finally {
      await w.close();
    }
  });

  it('(c) an LLM answer (a slow handler) in one message', async () => {
    const w = await tracedWorker({ LLM_BASE_URL: llm.url, LLM_MODEL: 'test-model' });
    try {
      const t = await w.traced(async () => {
        expect((await settled(w.queue, await userSays(w.queue, 'u-c', 'tell me'))).state).toBe('completed');
      });
      report('(c) LLM, one part, customer-service', t);
      // The slow answer is written by the plan, the next write anyway.
      expect(ourTrips(t)).toEqual(['wxJobStart', ...MEMORY, 'wxJobPlan']);
      expect(completions(t)).toHaveLength(1);
      expect(completions(t)[0]).toContain(COMPLETION);
    } finally {
      await w.close();
    }
  });

  it('(d) passive mode: a keyword rule recorded for the gateway', async () => {
    const w = await tracedWorker({ REPLY_MODE: 'passive' });
    try {
      const t = await w.traced(async () => {
        expect((await settled(w.queue, await userSays(w.queue, 'u-d', '帮助'))).state).toBe('completed');
      });
      report('(d) keyword rule, passive', t);
      // The turn (which also says the inbox is empty: no fetch) and the answer recorded for the gateway.
      expect(ourTrips(t)).toEqual(['wxJobStart', 'wxAnswerRecord']);
      expect(completions(t)).toHaveLength(1);
      expect(completions(t)[0]).toContain(COMPLETION);
    } finally {
      await w.close();
    }
  });

  it('(e) a message arriving while the one before it is answered waits its turn and is woken by the release', async () => {
    // A waiting job would look again only after a minute: only the release can wake it in time.
    const w = await tracedWorker({ LLM_BASE_URL: llm.url, LLM_MODEL: 'test-model', WORKER_CONCURRENCY: '2' }, 60_000);
    const waited = llm.requests.length;
    llm.setReply(async () => {
      await new Promise((r) => setTimeout(r, 700));
      return 'slow answer';
    });
    try {
      const t = await w.traced(async () => {
        const first = await userSays(w.queue, 'u-e', 'tell me');
        await waitFor(() => llm.requests.length > waited, 10_000, 'the LLM to be asked');
        const second = await userSays(w.queue, 'u-e', '帮助');
        // The second job tried its turn and went back to delayed until the first released it.
        await waitFor(async () => (await w.queue.getJobState(second)) === 'delayed', 10_000, 'the second job to wait');
        expect((await settled(w.queue, first)).state).toBe('completed');
        expect((await settled(w.queue, second)).state).toBe('completed');
      });
      report('(e) LLM, a second message of the user waiting behind it (2 jobs, concurrency 2)', t);
      // First: turn + memory + plan; second: its turn (wait), then turn + plan once woken by the
      // first's release (BullMQ's promote inside it: no lookup of its own). Two jobs at once
      // interleave on the connection: what ran is counted, not how it was grouped.
      const memory = new Set(['lrange', 'multi', 'rpush', 'ltrim', 'expire', 'exec']);
      expect(ourCommands(t).filter((c) => !memory.has(c)).sort()).toEqual(['wxJobFinish', 'wxJobFinish', 'wxJobPlan', 'wxJobPlan', 'wxJobStart', 'wxJobStart', 'wxJobStart']);
      expect(completions(t)).toHaveLength(2);
      for (const c of completions(t)) expect(c).toContain(COMPLETION);
    } finally {
      // (The last test of the file: the LLM's reply stays slow.)
      await w.close();
    }
  });
});

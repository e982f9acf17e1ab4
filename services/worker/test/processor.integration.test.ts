import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_JOB_OPTIONS, JOB_NAMES, JOB_RETENTION, type InboundJobPayload } from '@wxrelay/shared';
import { startRedis, waitFor, type TestRedis } from '@wxrelay/testkit';
import { startFakeLlm, startFakeWechatApi, type FakeLlm, type FakeWechatApi } from '@wxrelay/simulator';
import { DEFAULT_CUT_NOTICE, utf8Bytes } from '../src/delivery/chunk-text.js';
import { createWorkerMetrics } from '../src/metrics.js';
import type { InDoubtSends, JobResult, ReplyProgress } from '../src/pipeline/processor.js';
import { reply } from '../src/wechat/messages.js';
import { buildWorker, type RunningWorker } from '../src/worker.js';
import { captureLogger, enqueue, nextMsgId, producer, settled, textMessage, workerConfig } from './support.js';

const APP_ID = 'wxtestapp0001';
const APP_SECRET = 'test-app-secret-value';

let redis: TestRedis;
let wechat: FakeWechatApi;
let llm: FakeLlm;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
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
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Harness {
  queue: Queue;
  worker: RunningWorker;
  appId: string;
  logs: ReturnType<typeof captureLogger>;
  metrics: RunningWorker['metrics'];
}

interface StartOptions {
  withLlm?: boolean;
  rules?: string;
  chunkBytes?: number;
  inDoubtSends?: InDoubtSends;
}

/** One worker process (built as main.ts builds it), on a fresh prefix and appid. */
async function start(opts: StartOptions = {}): Promise<Harness> {
  const p = prepare();
  return { queue: p.queue, ...(await p.startWorker(opts)) };
}

/** The queue first (to fill it before any worker runs), then the worker. */
function prepare() {
  const prefix = redis.uniquePrefix('q');
  const p = producer(redis.url, prefix);
  cleanups.push(async () => {
    await p.queue.close();
    p.connection.disconnect();
  });
  return { queue: p.queue, startWorker: (opts: StartOptions = {}) => startWorker(prefix, opts) };
}

/** A rules file, as REPLY_RULES_FILE names one. */
function rulesFile(source: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'wxrelay-rules-')), 'rules.yaml');
  writeFileSync(file, source);
  return file;
}

async function startWorker(prefix: string, opts: StartOptions) {
  const appId = redis.uniquePrefix('app'); // a fresh token cache per test; the fake ignores it for sends
  const logs = captureLogger('debug');
  const config = workerConfig({
    WECHAT_APP_ID: APP_ID,
    WECHAT_APP_SECRET: APP_SECRET,
    WECHAT_API_BASE_URL: wechat.url,
    WECHAT_API_TIMEOUT_MS: '5000',
    REDIS_URL: redis.url,
    QUEUE_PREFIX: prefix,
    WORKER_CONCURRENCY: '20',
    WORKER_LOCK_DURATION_MS: '5000',
    WORKER_STALLED_INTERVAL_MS: '5000',
    WORKER_SHUTDOWN_TIMEOUT_MS: '5000',
    ...(opts.withLlm === true ? { LLM_BASE_URL: llm.url, LLM_MODEL: 'test-model', LLM_TIMEOUT_MS: '10000' } : {}),
    ...(opts.rules === undefined ? {} : { REPLY_RULES_FILE: rulesFile(opts.rules) }),
    ...(opts.chunkBytes === undefined ? {} : { CS_CHUNK_BYTES: String(opts.chunkBytes) }),
    ...(opts.inDoubtSends === undefined ? {} : { IN_DOUBT_SENDS: opts.inDoubtSends }),
  });
  const worker = await buildWorker(config, {
    log: logs.log,
    metrics: createWorkerMetrics({ defaultMetrics: false }),
    stateAppId: appId,
    typingIntervalMs: 200,
    turnRetryDelayMs: 50,
  });
  worker.start();
  cleanups.push(() => worker.close());
  return { worker, appId, logs, metrics: worker.metrics };
}

/** The value of one counter series of the worker's registry. */
async function counter(h: Pick<Harness, 'metrics'>, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await h.metrics.registry.getSingleMetric(name)?.get();
  const match = metric?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return match?.value ?? 0;
}

/** What WeChat would see: the user writes, and the gateway enqueues. */
async function userSays(h: Harness, openid: string, content: string): Promise<string> {
  wechat.userInteracted(openid, 'message');
  return enqueue(h.queue, textMessage(openid, content));
}

const texts = (openid?: string) => wechat.deliveries.filter((d) => openid === undefined || d.touser === openid).map((d) => (d.body.text as { content: string } | undefined)?.content);

describe('inbound worker against real Redis and the fake WeChat API', () => {
  it('echoes a text with its date when there is no LLM', async () => {
    const h = await start();
    const id = await userSays(h, 'u-echo', '你好呀');
    expect((await settled(h.queue, id)).state).toBe('completed');
    expect(wechat.deliveries).toHaveLength(1);
    expect(texts()[0]).toContain('你说：你好呀');
    expect(wechat.tokenFetches).toHaveLength(1);
    // Retention comes from the worker (jobs do not carry it): the completed job is kept for inspection.
    expect(h.worker.worker.opts.removeOnComplete).toEqual(JOB_RETENTION.removeOnComplete);
    expect(h.worker.worker.opts.removeOnFail).toEqual(JOB_RETENTION.removeOnFail);
  });

  it('welcomes a new follower and acknowledges an unknown type without a reply', async () => {
    const h = await start();
    wechat.userInteracted('u-new', 'event');
    const sub = await enqueue(h.queue, { kind: 'event', event: 'subscribe', eventKey: 'qrscene_7', scene: '7', toUserName: 'gh_test', fromUserName: 'u-new', createTime: Math.floor(Date.now() / 1000) });
    const unknown = await enqueue(h.queue, { kind: 'unknown', msgType: 'hologram', raw: {}, toUserName: 'gh_test', fromUserName: 'u-new', createTime: Math.floor(Date.now() / 1000) });
    expect((await settled(h.queue, sub)).state).toBe('completed');
    expect((await settled(h.queue, unknown)).state).toBe('completed');
    expect(texts('u-new')).toEqual(['Hi~ 终于等到你']);
    expect(h.logs.lines().some((l) => l.msg === 'unknown message type: acknowledged without a reply')).toBe(true);
  });

  it('answers from a rules file with any message type', async () => {
    const h = await start({ rules: 'rules: [{ match: { content: 菜单 }, reply: { msgtype: msgmenu, msgmenu: { head_content: 请选择, list: [{ id: "1", content: 满意 }], tail_content: 谢谢 } } }]' });
    const id = await userSays(h, 'u-rule', '菜单');
    expect((await settled(h.queue, id)).state).toBe('completed');
    expect(wechat.deliveries[0]).toMatchObject({ msgtype: 'msgmenu', touser: 'u-rule' });
  });

  it('refreshes a token invalidated mid-run once and delivers the message', async () => {
    const h = await start();
    expect((await settled(h.queue, await userSays(h, 'u-tok', 'one'))).state).toBe('completed');
    wechat.invalidateTokens();
    const id = await userSays(h, 'u-tok', 'two');
    expect((await settled(h.queue, id)).state).toBe('completed');
    expect(texts('u-tok').map((t) => t?.split('：')[1])).toEqual(['one', 'two']);
    expect(wechat.tokenFetches).toHaveLength(2);
    expect(wechat.calls.filter((c) => c.errcode === 40001)).toHaveLength(1);
  });

  it('retries -1 twice and delivers exactly once', async () => {
    const h = await start();
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: -1, times: 2 });
    const id = await userSays(h, 'u-busy', 'hello');
    const { state, job } = await settled(h.queue, id);
    expect(state).toBe('completed');
    expect(job.attemptsMade).toBe(3); // the retries are the job's attempts (one policy, one count)
    expect(wechat.deliveries).toHaveLength(1);
    expect(wechat.calls.filter((c) => c.path === '/cgi-bin/message/custom/send').map((c) => c.errcode)).toEqual([-1, -1, 0]);
  });

  it('a -1 that recovers on the second try delivers the part once', async () => {
    const h = await start();
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: -1, times: 1 });
    const id = await userSays(h, 'u-busy1', 'hello');
    const { state, job } = await settled(h.queue, id);
    expect(state).toBe('completed');
    expect(job.attemptsMade).toBe(2);
    expect(wechat.calls.filter((c) => c.path === '/cgi-bin/message/custom/send').map((c) => c.errcode)).toEqual([-1, 0]);
    expect(wechat.deliveries).toHaveLength(1);
    // WeChat answered: the part was not sent, so the retry is no send in doubt.
    expect(await counter(h, 'wxrelay_worker_in_doubt_sends_total', { action: 'resent' })).toBe(0);
  });

  it('-1 on every send: exactly three tries of the part reach WeChat, then the job fails for good', async () => {
    const h = await start();
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: -1, times: Infinity });
    const id = await userSays(h, 'u-down', 'hello');
    const { state, job } = await settled(h.queue, id);
    expect(state).toBe('failed');
    expect(job.failedReason).toContain('-1');
    expect(job.attemptsMade).toBe(3); // of 6: not retried further
    expect(wechat.calls.filter((c) => c.path === '/cgi-bin/message/custom/send').map((c) => c.errcode)).toEqual([-1, -1, -1]);
    expect(wechat.deliveries).toHaveLength(0);
  });

  it('does not retry 45047: the job fails at once with the reason (a dead letter)', async () => {
    const h = await start();
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: 45047 });
    const id = await userSays(h, 'u-quota', 'hello');
    const { state, job } = await settled(h.queue, id);
    expect(state).toBe('failed');
    expect(job.failedReason).toContain('45047');
    expect(wechat.calls.filter((c) => c.path === '/cgi-bin/message/custom/send')).toHaveLength(1);
    expect(wechat.deliveries).toHaveLength(0);
  });

  it('splits a long LLM answer into ≤ 2048-byte chunks, never over the quota, and says it was cut', async () => {
    const h = await start({ withLlm: true });
    const sentence = '这是一个非常长的回答中的一句话，用来测试分段发送。';
    llm.setReply(() => Array.from({ length: 400 }, () => sentence).join('')); // ≈ 30 KB
    const id = await userSays(h, 'u-long', '讲个长故事');
    expect((await settled(h.queue, id)).state).toBe('completed');
    const parts = texts('u-long');
    expect(parts).toHaveLength(5);
    for (const p of parts) expect(utf8Bytes(p!)).toBeLessThanOrEqual(2048);
    expect(parts[4]!.endsWith(DEFAULT_CUT_NOTICE)).toBe(true);
    expect(llm.requests).toHaveLength(1);
    expect(wechat.calls.filter((c) => c.errcode === 45047)).toHaveLength(0);
  });

  it('answers two messages of one user in order though the first is slower, other users meanwhile', async () => {
    const h = await start({ withLlm: true });
    llm.setReply(async (messages) => {
      const last = messages.findLast((m) => m.role === 'user')?.content ?? '';
      if (last === 'first') await new Promise((r) => setTimeout(r, 1_500));
      return `answer to ${last}`;
    });
    const a = await userSays(h, 'u-order', 'first');
    // The second arrives while the first is being answered (had it been queued already, the
    // first's job would answer both together: see the backlog tests below).
    await waitFor(() => llm.requests.length >= 1, 10_000, 'the first answer to start');
    const b = await userSays(h, 'u-order', 'second');
    const other = await userSays(h, 'u-other', 'hi');
    expect((await settled(h.queue, other)).state).toBe('completed');
    expect(texts('u-order')).toEqual([]); // the other user was not held up by u-order's slow answer
    expect((await settled(h.queue, a)).state).toBe('completed');
    expect((await settled(h.queue, b)).state).toBe('completed');
    expect(texts('u-order')).toEqual(['answer to first', 'answer to second']);
    // The slow handler showed "typing…".
    expect(wechat.typing.some((t) => t.touser === 'u-order' && t.command === 'Typing')).toBe(true);
  });

  it('never calls the LLM again or re-sends a part when a job is retried', async () => {
    const h = await start({ withLlm: true, chunkBytes: 64 });
    llm.setReply(() => 'abcdefghij '.repeat(20)); // ≈ 220 bytes → 4 parts of ≤ 64 bytes
    // Part 2 fails (a 5xx from a proxy: one call, no answer from WeChat): the job retries.
    wechat.inject({ path: '/cgi-bin/message/custom/send', delayMs: 0, times: 1 });
    wechat.inject({ path: '/cgi-bin/message/custom/send', httpStatus: 502, times: 1 });
    const id = await userSays(h, 'u-retry', 'go');
    const { state, job } = await settled(h.queue, id, 40_000);
    expect(state).toBe('completed');
    expect(job.attemptsMade).toBe(2); // the second attempt resumed where the first stopped
    expect(llm.requests).toHaveLength(1);
    const parts = texts('u-retry');
    expect(parts).toHaveLength(4);
    expect(parts.join('').replace(/\s/g, '')).toBe('abcdefghij'.repeat(20));
  });

  it('pauses every worker on 45009; the job waits it out without failing or spending an attempt', async () => {
    const h = await start();
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: 45009 });
    const id = await userSays(h, 'u-limit', 'hello');
    await waitFor(() => wechat.calls.some((c) => c.errcode === 45009), 10_000, 'the 45009 answer');
    await waitFor(async () => (await h.queue.getJobState(id)) === 'delayed', 10_000, 'the job to wait the pause out');
    const job = await h.queue.getJob(id);
    expect(job?.attemptsMade).toBe(0);
    expect(await h.queue.getRateLimitTtl()).toBeGreaterThan(60_000);
    expect(wechat.deliveries).toHaveLength(0);
  });

  it('cancels the typing indicator when a slow reply fails for good', async () => {
    const h = await start({ withLlm: true });
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: 48001 });
    const id = await userSays(h, 'u-cancel', 'hello');
    const { state, job } = await settled(h.queue, id);
    expect(state).toBe('failed');
    expect(job.failedReason).toContain('48001');
    await waitFor(() => wechat.typing.some((t) => t.touser === 'u-cancel' && t.command === 'CancelTyping'), 5_000, 'CancelTyping');
  });

  it('never logs the AppSecret or the access token', async () => {
    const h = await start();
    await settled(h.queue, await userSays(h, 'u-log', 'x'));
    const text = h.logs.text();
    expect(text).not.toContain(APP_SECRET);
    const reader = new Redis(redis.url);
    const token = await reader.hget(`wx:token:${h.appId}`, 'token');
    reader.disconnect();
    expect(token).toBeTruthy();
    expect(text).not.toContain(token!);
    expect(text).not.toContain('u-log');
  });
});

describe('a backlog of one user is answered together, within the quota', () => {
  /** Fills the queue with one user's messages before any worker runs (a backlog). */
  async function backlog(openid: string, count: number) {
    const p = prepare();
    const ids: string[] = [];
    for (let i = 1; i <= count; i++) {
      wechat.userInteracted(openid, 'message');
      ids.push(await enqueue(p.queue, textMessage(openid, `m${i}`)));
    }
    return { p, ids };
  }
  const said = (i: number) => `你说：m${i}`;
  const occurrences = (text: string, needle: string) => text.split(needle).length - 1;

  it("a user's 8 queued messages: every answer exactly once, in order, in ≤ 5 sends, no job failing", async () => {
    const { p, ids } = await backlog('u-backlog', 8);
    const h = { queue: p.queue, ...(await p.startWorker()) };
    const results = await Promise.all(ids.map((id) => settled(h.queue, id)));
    expect(results.map((r) => r.state)).toEqual(ids.map(() => 'completed'));
    const sends = texts('u-backlog');
    expect(sends.length).toBeLessThanOrEqual(5);
    const all = sends.join('\n');
    for (let i = 1; i <= 8; i++) expect(occurrences(all, said(i)), said(i)).toBe(1);
    const positions = Array.from({ length: 8 }, (_, i) => all.indexOf(said(i + 1)));
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    // The first answered the rest; each of those completed without sending.
    const values = results.map((r) => r.job.returnvalue as JobResult);
    expect(values[0]).toMatchObject({ outcome: 'replied', answeredWith: ids.slice(1) });
    for (const v of values.slice(1)) expect(v).toEqual({ outcome: 'answered-together', answeredBy: ids[0] });
    expect(wechat.calls.filter((c) => c.errcode === 45047)).toHaveLength(0);
  });

  it('an absorbed job, once it has its turn, completes without sending and says by whom', async () => {
    const { p, ids } = await backlog('u-absorbed', 2);
    const h = { queue: p.queue, ...(await p.startWorker()) };
    const [first, second] = [await settled(h.queue, ids[0]!), await settled(h.queue, ids[1]!)];
    expect(first.state).toBe('completed');
    expect(second.state).toBe('completed');
    expect(second.job.returnvalue).toEqual({ outcome: 'answered-together', answeredBy: ids[0] });
    expect(wechat.deliveries).toHaveLength(1);
    expect(texts('u-absorbed')[0]).toMatch(new RegExp(`${said(1)}\n\n[^]*${said(2)}$`));
    expect(h.logs.lines().find((l) => l.msg === 'answered together with an earlier message')).toMatchObject({ jobId: ids[1], by: ids[0] });
    expect(await counter(h, 'wxrelay_worker_jobs_total', { outcome: 'answered-together' })).toBe(1);
  });

  it('an absorbing job that fails for good before sending lets the others answer themselves', async () => {
    const { p, ids } = await backlog('u-fails', 3);
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: 48001, times: 1 });
    const h = { queue: p.queue, ...(await p.startWorker()) };
    const results = await Promise.all(ids.map((id) => settled(h.queue, id)));
    expect(results.map((r) => r.state)).toEqual(['failed', 'completed', 'completed']);
    expect(results[0]!.job.failedReason).toContain('48001');
    // The refused send carried all three answers; the markers were taken back, so the second
    // message's job answered itself (and the third with it).
    const sends = texts('u-fails');
    expect(sends).toHaveLength(1);
    expect(sends[0]).not.toContain(said(1));
    expect(sends[0]).toMatch(new RegExp(`${said(2)}\n\n[^]*${said(3)}$`));
    expect(results[1]!.job.returnvalue).toMatchObject({ outcome: 'replied', answeredWith: [ids[2]] });
  });

  it('a later message whose handler fails is left to answer itself; the ones before it are still answered together', async () => {
    const { p, ids } = await backlog('u-drop', 4);
    let failed = false;
    llm.setReply((messages) => {
      const last = messages.at(-1)?.content ?? '';
      if (last === 'm3' && !failed) {
        failed = true;
        throw new Error('the provider fell over');
      }
      return `Echo: ${last}`;
    });
    const h = { queue: p.queue, ...(await p.startWorker({ withLlm: true })) };
    const results = await Promise.all(ids.map((id) => settled(h.queue, id, 40_000)));
    expect(results.map((r) => r.state)).toEqual(ids.map(() => 'completed'));
    const all = texts('u-drop').join('\n');
    for (let i = 1; i <= 4; i++) expect(occurrences(all, `Echo: m${i}`), `m${i}`).toBe(1);
    // The first job answered the second with its own; the third (its handler failed) answered itself and the fourth.
    expect(results[0]!.job.returnvalue).toMatchObject({ outcome: 'replied', answeredWith: [ids[1]] });
    expect(results[1]!.job.returnvalue).toEqual({ outcome: 'answered-together', answeredBy: ids[0] });
    expect(results[2]!.job.returnvalue).toMatchObject({ outcome: 'replied', answeredWith: [ids[3]] });
  });
});

describe('a send in doubt (the worker died mid-send)', () => {
  /** A job as a worker SIGKILLed while sending part 2 (index 1) of 3 leaves it. */
  async function killedMidSend(h: Harness, openid: string): Promise<string> {
    wechat.userInteracted(openid, 'message');
    const message = textMessage(openid, 'tell me');
    const parts = [reply.text('part one'), reply.text('part two'), reply.text('part three')];
    const progress: ReplyProgress = { replies: parts, parts, cut: false, sent: 1 };
    const dedupKey = nextMsgId();
    const payload: InboundJobPayload = { v: 1, dedupKey, mode: 'plain', receivedAt: Date.now(), message };
    const jobId = `msg-${dedupKey}`;
    await h.queue.add(JOB_NAMES.inbound, { ...payload, progress }, { ...DEFAULT_JOB_OPTIONS, jobId });
    return jobId;
  }

  it('is sent again by default, counted and logged with the jobs its part carries', async () => {
    const h = await start();
    const id = await killedMidSend(h, 'u-doubt');
    expect((await settled(h.queue, id)).state).toBe('completed');
    expect(texts('u-doubt')).toEqual(['part two', 'part three']);
    expect(await counter(h, 'wxrelay_worker_in_doubt_sends_total', { action: 'resent' })).toBe(1);
    const line = h.logs.lines().find((l) => l.msg === 'send in doubt');
    expect(line).toMatchObject({ jobId: id, part: 1, jobs: [id] });
  });

  it('a worker whose lock lapsed mid-send stops before its next send; the part it could not record is in doubt, never a silent duplicate', async () => {
    const h = await start({ withLlm: true, chunkBytes: 64 });
    llm.setReply(() => 'abcdefghij '.repeat(10)); // ≈ 110 bytes → 2 parts of ≤ 64 bytes
    // The first part's send hangs a while; meanwhile the lock goes to "another worker" (as the
    // stalled-job checker would hand it on after a missed renewal), for a second.
    wechat.inject({ path: '/cgi-bin/message/custom/send', delayMs: 1_500, times: 1 });
    const id = await userSays(h, 'u-lock', 'go');
    await waitFor(async () => (await h.queue.getJob(id))?.data.progress?.parts !== undefined, 20_000, 'the parts to be planned');
    const client = new Redis(redis.url);
    try {
      await client.set(`${h.queue.toKey(id)}:lock`, 'another-worker', 'PX', 1_000);
    } finally {
      client.disconnect();
    }
    const { state } = await settled(h.queue, id, 40_000);
    expect(state).toBe('completed');
    // The attempt that lost its lock could not record part 1 as sent nor part 2 as starting, so it
    // stopped: part 2 went out once, from the attempt that took the job over. That attempt found
    // part 1 marked as starting with no outcome: in doubt, re-sent, and said so (not silent).
    const parts = texts('u-lock');
    expect(parts).toHaveLength(3);
    expect(parts[0]).toBe(parts[1]);
    expect((parts[0]! + parts[2]!).replace(/\s/g, '')).toBe('abcdefghij'.repeat(10));
    expect(h.logs.lines().some((l) => String(l.msg).startsWith('lost the job') && l.jobId === id)).toBe(true);
    expect(h.logs.lines().filter((l) => l.msg === 'send in doubt')).toEqual([expect.objectContaining({ jobId: id, part: 0 })]);
  });

  it('is skipped with IN_DOUBT_SENDS=skip (at most once)', async () => {
    const h = await start({ inDoubtSends: 'skip' });
    const id = await killedMidSend(h, 'u-doubt-skip');
    expect((await settled(h.queue, id)).state).toBe('completed');
    expect(texts('u-doubt-skip')).toEqual(['part three']);
    expect(await counter(h, 'wxrelay_worker_in_doubt_sends_total', { action: 'skipped' })).toBe(1);
    expect(await counter(h, 'wxrelay_worker_in_doubt_sends_total', { action: 'resent' })).toBe(0);
  });
});

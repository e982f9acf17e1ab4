import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { JOB_RETENTION } from '@wxrelay/shared';
import { startRedis, type TestRedis } from '@wxrelay/testkit';
import { startFakeLlm, startFakeWechatApi, type FakeLlm, type FakeWechatApi } from '@wxrelay/simulator';
import { createConversationMemory } from '../src/conversation-memory.js';
import { DEFAULT_CUT_NOTICE, utf8Bytes } from '../src/chunk-text.js';
import { createTokenFetcher } from '../src/fetch-token.js';
import { createHttpTransport } from '../src/http.js';
import { createBuiltinRoutes } from '../src/handlers.js';
import { createInboundWorker, type InboundWorker } from '../src/inbound-worker.js';
import { createLlmClient } from '../src/llm.js';
import { createQuotaLedger } from '../src/quota-ledger.js';
import { parseReplyRules } from '../src/reply-rules.js';
import { createRouter } from '../src/router.js';
import { createTokenStore } from '../src/token-store.js';
import { createWechatApi } from '../src/wechat-api.js';
import { captureLogger, waitFor } from './helpers.js';
import { enqueue, producer, settled, textMessage } from './support.js';

const APP_ID = 'wxtestapp0001';
const APP_SECRET = 'test-app-secret-value';

let redis: TestRedis;
let wechat: FakeWechatApi;
let llm: FakeLlm;
const cleanups: (() => Promise<void>)[] = [];
const transport = createHttpTransport();

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
  worker: InboundWorker;
  appId: string;
  logs: ReturnType<typeof captureLogger>;
}

/** One worker process's wiring (as main.ts does it), on a fresh prefix and appid. */
function start(opts: { withLlm?: boolean; rules?: string; chunkBytes?: number } = {}): Harness {
  const prefix = redis.uniquePrefix('q');
  const appId = redis.uniquePrefix('app'); // a fresh token cache per test; the fake ignores it for sends
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined);
  const logs = captureLogger('debug');
  const log = logs.log;
  const tokens = createTokenStore({
    redis: connection,
    appId,
    log,
    fetchToken: createTokenFetcher({ baseUrl: wechat.url, appId: APP_ID, appSecret: APP_SECRET, endpoint: 'stable', transport, timeoutMs: 5_000 }),
  });
  const api = createWechatApi({ baseUrl: wechat.url, transport, tokens, log, timeoutMs: 5_000, retry: { baseDelayMs: 20, maxDelayMs: 100 } });
  const chatbot = opts.withLlm === true ? { client: createLlmClient({ baseUrl: llm.url, model: 'test-model', timeoutMs: 10_000, transport }), memory: createConversationMemory({ redis: connection, appId }) } : undefined;
  const router = createRouter([...(opts.rules === undefined ? [] : parseReplyRules(opts.rules)), ...createBuiltinRoutes({ welcomeMessage: 'Hi~ 终于等到你', ...(chatbot === undefined ? {} : { chatbot }) })]);
  const worker = createInboundWorker({
    connection,
    prefix,
    appId,
    concurrency: 20,
    lockDurationMs: 5_000,
    stalledIntervalMs: 5_000,
    api,
    router,
    ledger: createQuotaLedger({ redis: connection, appId }),
    log,
    typingIntervalMs: 200,
    turnRetryDelayMs: 50,
    ...(opts.chunkBytes === undefined ? {} : { chunkBytes: opts.chunkBytes }),
  });
  const p = producer(redis.url, prefix);
  cleanups.push(async () => {
    await worker.close(5_000);
    await p.queue.close();
    p.connection.disconnect();
    connection.disconnect();
  });
  return { queue: p.queue, worker, appId, logs };
}

/** What WeChat would see: the user writes, and the gateway enqueues. */
async function userSays(h: Harness, openid: string, content: string): Promise<string> {
  wechat.userInteracted(openid, 'message');
  return enqueue(h.queue, textMessage(openid, content));
}

const texts = (openid?: string) => wechat.deliveries.filter((d) => openid === undefined || d.touser === openid).map((d) => (d.body.text as { content: string } | undefined)?.content);

describe('inbound worker against real Redis and the fake WeChat API', () => {
  it('echoes a text with its date when there is no LLM', async () => {
    const h = start();
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
    const h = start();
    wechat.userInteracted('u-new', 'event');
    const sub = await enqueue(h.queue, { kind: 'event', event: 'subscribe', eventKey: 'qrscene_7', scene: '7', toUserName: 'gh_test', fromUserName: 'u-new', createTime: Math.floor(Date.now() / 1000) });
    const unknown = await enqueue(h.queue, { kind: 'unknown', msgType: 'hologram', raw: {}, toUserName: 'gh_test', fromUserName: 'u-new', createTime: Math.floor(Date.now() / 1000) });
    expect((await settled(h.queue, sub)).state).toBe('completed');
    expect((await settled(h.queue, unknown)).state).toBe('completed');
    expect(texts('u-new')).toEqual(['Hi~ 终于等到你']);
    expect(h.logs.lines().some((l) => l.msg === 'unknown message type: acknowledged without a reply')).toBe(true);
  });

  it('answers from a rules file with any message type', async () => {
    const h = start({ rules: 'rules: [{ match: { content: 菜单 }, reply: { msgtype: msgmenu, msgmenu: { head_content: 请选择, list: [{ id: "1", content: 满意 }], tail_content: 谢谢 } } }]' });
    const id = await userSays(h, 'u-rule', '菜单');
    expect((await settled(h.queue, id)).state).toBe('completed');
    expect(wechat.deliveries[0]).toMatchObject({ msgtype: 'msgmenu', touser: 'u-rule' });
  });

  it('refreshes a token invalidated mid-run once and delivers the message', async () => {
    const h = start();
    expect((await settled(h.queue, await userSays(h, 'u-tok', 'one'))).state).toBe('completed');
    wechat.invalidateTokens();
    const id = await userSays(h, 'u-tok', 'two');
    expect((await settled(h.queue, id)).state).toBe('completed');
    expect(texts('u-tok').map((t) => t?.split('：')[1])).toEqual(['one', 'two']);
    expect(wechat.tokenFetches).toHaveLength(2);
    expect(wechat.calls.filter((c) => c.errcode === 40001)).toHaveLength(1);
  });

  it('retries -1 twice and delivers exactly once', async () => {
    const h = start();
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: -1, times: 2 });
    const id = await userSays(h, 'u-busy', 'hello');
    const { state, job } = await settled(h.queue, id);
    expect(state).toBe('completed');
    expect(job.attemptsMade).toBe(1); // one attempt: the retries happened inside the call
    expect(wechat.deliveries).toHaveLength(1);
    expect(wechat.calls.filter((c) => c.path === '/cgi-bin/message/custom/send').map((c) => c.errcode)).toEqual([-1, -1, 0]);
  });

  it('does not retry 45047: the job fails at once with the reason (a dead letter)', async () => {
    const h = start();
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: 45047 });
    const id = await userSays(h, 'u-quota', 'hello');
    const { state, job } = await settled(h.queue, id);
    expect(state).toBe('failed');
    expect(job.failedReason).toContain('45047');
    expect(wechat.calls.filter((c) => c.path === '/cgi-bin/message/custom/send')).toHaveLength(1);
    expect(wechat.deliveries).toHaveLength(0);
  });

  it('splits a long LLM answer into ≤ 2048-byte chunks, never over the quota, and says it was cut', async () => {
    const h = start({ withLlm: true });
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
    const h = start({ withLlm: true });
    llm.setReply(async (messages) => {
      const last = messages.findLast((m) => m.role === 'user')?.content ?? '';
      if (last === 'first') await new Promise((r) => setTimeout(r, 1_500));
      return `answer to ${last}`;
    });
    const a = await userSays(h, 'u-order', 'first');
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
    const h = start({ withLlm: true, chunkBytes: 64 });
    llm.setReply(() => 'abcdefghij '.repeat(20)); // ≈ 220 bytes → 4 parts of ≤ 64 bytes
    // Part 2 fails for good in the call (network-level 5xx beyond the in-call retries): the job retries.
    wechat.inject({ path: '/cgi-bin/message/custom/send', delayMs: 0, times: 1 });
    wechat.inject({ path: '/cgi-bin/message/custom/send', httpStatus: 502, times: 4 });
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
    const h = start();
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
    const h = start({ withLlm: true });
    wechat.inject({ path: '/cgi-bin/message/custom/send', errcode: 48001 });
    const id = await userSays(h, 'u-cancel', 'hello');
    const { state, job } = await settled(h.queue, id);
    expect(state).toBe('failed');
    expect(job.failedReason).toContain('48001');
    await waitFor(() => wechat.typing.some((t) => t.touser === 'u-cancel' && t.command === 'CancelTyping'), 5_000, 'CancelTyping');
  });

  it('never logs the AppSecret or the access token', async () => {
    const h = start();
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

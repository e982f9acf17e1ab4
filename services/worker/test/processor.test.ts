import type { InboundJobPayload } from '@wxrelay/shared';
import { describe, expect, it } from 'vitest';
import { reply, type CustomMessage, type Reply } from '../src/wechat/messages.js';
import { createProcessor, type InboundJob, type InboundJobData, type ReplyProgress } from '../src/pipeline/processor.js';
import type { QuotaLedger } from '../src/delivery/ledger.js';
import { createRouter } from '../src/replies/router.js';
import type { UserTurns } from '../src/user-turns.js';
import type { WechatApi } from '../src/wechat/api.js';
import { captureLogger, textMessage } from './support.js';

/*
 * The processor with in-memory dependencies and a stand-in job, to count what it writes to the
 * job; the integration tests run the same code against Redis, BullMQ and HTTP.
 */

function fakeJob(progress?: ReplyProgress) {
  const payload: InboundJobPayload = { v: 1, dedupKey: 'k1', mode: 'plain', receivedAt: Date.now(), message: textMessage('u1', 'hi') };
  const writes: ReplyProgress[] = [];
  const job = {
    id: 'msg-k1',
    name: 'inbound',
    data: { ...payload, ...(progress === undefined ? {} : { progress }) } as InboundJobData,
    timestamp: Date.now(),
    attemptsStarted: 1,
    attemptsMade: 0,
    opts: { attempts: 6 },
    updateData(data: InboundJobData) {
      writes.push(structuredClone(data.progress!));
      return Promise.resolve();
    },
    moveToDelayed: () => Promise.resolve(),
  };
  return { job: job as unknown as InboundJob, writes };
}

function setup(answer: readonly Reply[], opts: { slow?: boolean; failRelease?: boolean; quota?: number } = {}) {
  const sent: CustomMessage[] = [];
  let handlerCalls = 0;
  const api: WechatApi = {
    sendCustomMessage: (m) => {
      sent.push(m);
      return Promise.resolve();
    },
    typing: () => Promise.resolve(),
  };
  const ledger: QuotaLedger = {
    grant: () => Promise.resolve(),
    reserve: (_o, want) => Promise.resolve(Math.min(want, opts.quota ?? want)),
    exhaust: () => Promise.resolve(),
    keys: (o) => ({ window: `w:${o}`, sends: `s:${o}` }),
  };
  const turns: UserTurns = {
    take: () => Promise.resolve(true),
    enter: () => Promise.resolve({ kind: 'turn', followers: [] }),
    release: () => (opts.failRelease === true ? Promise.reject(new Error('redis went away')) : Promise.resolve(undefined)),
    markAnswered: () => Promise.resolve(),
    clearAnswered: () => Promise.resolve(),
  };
  const router = createRouter([
    {
      name: 'answer',
      match: () => true,
      ...(opts.slow === true ? { slow: true } : {}),
      handler: (ctx) => {
        handlerCalls += 1;
        ctx.log.info('handler ran');
        return Promise.resolve(answer);
      },
    },
  ]);
  const logs = captureLogger('debug');
  const processor = createProcessor({ api, router, ledger, turns, log: logs.log, rateLimit: () => Promise.resolve(), typingIntervalMs: 60_000 });
  return { processor, sent, handlerCalls: () => handlerCalls, logs };
}

describe('processor: what it writes to the job', () => {
  it('a fast one-part reply writes the job once, before the send: the answer and the planned part', async () => {
    const s = setup([reply.text('hello')]);
    const { job, writes } = fakeJob();
    expect(await s.processor(job)).toMatchObject({ outcome: 'replied', parts: 1 });
    expect(writes).toEqual([{ sent: 0, replies: [reply.text('hello')], parts: [reply.text('hello')], cut: false }]);
    expect(s.sent).toHaveLength(1);
  });

  it('a slow answer is saved by the next write, the planned parts; "sent" after every part but the last', async () => {
    const answer = [reply.text('one'), reply.text('two'), reply.text('three')];
    const s = setup(answer, { slow: true });
    const { job, writes } = fakeJob();
    await s.processor(job);
    // The plan comes right after the answer and writes it whatever the quota says (redis-steps.ts):
    // the answer has no write of its own.
    expect(writes.map((w) => [w.replies?.length, w.parts?.length, w.sent])).toEqual([
      [3, 3, 0],
      [3, 3, 1],
      [3, 3, 2],
    ]);
    expect(s.sent).toHaveLength(3);
  });

  it('a slow answer the quota refuses is saved all the same (a retry never asks the handler again)', async () => {
    const s = setup([reply.text('one')], { slow: true, quota: 0 });
    const { job, writes } = fakeJob();
    await expect(s.processor(job)).rejects.toMatchObject({ code: 'WX_ERR_NO_QUOTA' });
    expect(writes[0]).toMatchObject({ replies: [reply.text('one')], sent: 0 });
    expect(writes[0]?.parts).toBeUndefined();
  });

  it('a retried job resumes after the last part saved as sent, without calling the handler', async () => {
    const answer = [reply.text('one'), reply.text('two')];
    const s = setup(answer, { slow: true });
    const { job, writes } = fakeJob({ replies: answer, parts: answer, cut: false, sent: 1 });
    expect(await s.processor(job)).toMatchObject({ outcome: 'replied', parts: 2 });
    expect(s.handlerCalls()).toBe(0);
    expect(s.sent.map((m) => (m as { text: { content: string } }).text.content)).toEqual(['two']);
    expect(writes).toEqual([]);
  });

  it('once the last part is accepted, a failed turn release does not fail the job (a retry would send it again)', async () => {
    const s = setup([reply.text('hello')], { failRelease: true });
    const { job } = fakeJob();
    expect(await s.processor(job)).toMatchObject({ outcome: 'replied' });
    expect(s.sent).toHaveLength(1);
    expect(s.logs.lines().some((l) => l.msg === 'turn not released; the next job of the user takes it once this one is finished')).toBe(true);
  });

  it('logs the job id and message kind on every line, its own and the handler\'s, never the openid', async () => {
    const s = setup([reply.text('hello')]);
    const { job } = fakeJob();
    await s.processor(job);
    const lines = s.logs.lines();
    expect(lines.find((l) => l.msg === 'replied')).toMatchObject({ jobId: 'msg-k1', kind: 'text', route: 'answer', parts: 1 });
    expect(lines.find((l) => l.msg === 'handler ran')).toMatchObject({ jobId: 'msg-k1', kind: 'text' });
    expect(s.logs.text()).not.toContain('u1');
  });

  it('a handler with nothing to say writes nothing', async () => {
    const s = setup([]);
    const { job, writes } = fakeJob();
    expect(await s.processor(job)).toMatchObject({ outcome: 'no-reply' });
    expect(writes).toEqual([]);
  });

  it('gives up with a code: a job that is not a v1 payload, an answer without quota', async () => {
    const s = setup([reply.text('hello')], { quota: 0 });
    const { job } = fakeJob();
    await expect(s.processor(job)).rejects.toMatchObject({ name: 'UnrecoverableError', code: 'WX_ERR_NO_QUOTA' });
    const bad = { ...fakeJob().job, data: { v: 0 } } as unknown as InboundJob;
    await expect(s.processor(bad)).rejects.toMatchObject({ code: 'WX_ERR_PAYLOAD' });
    expect(s.sent).toHaveLength(0);
  });
});

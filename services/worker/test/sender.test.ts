import { describe, expect, it } from 'vitest';
import { chargeFailedPart, resumeSend, sendParts, type SendJob } from '../src/delivery/sender.js';
import type { ReplyProgress } from '../src/pipeline/job.js';
import { WechatApiError } from '../src/wechat/errcodes.js';
import { reply, type CustomMessage } from '../src/wechat/messages.js';
import { captureLogger } from './support.js';

/* The sender alone: an in-memory API and progress, no queue. */

const parts = [reply.text('one'), reply.text('two'), reply.text('three')];

function setup(progress: ReplyProgress, inDoubtSends: 'resend' | 'skip' = 'resend') {
  const sent: CustomMessage[] = [];
  const writes: ReplyProgress[] = [];
  const doubts: string[] = [];
  let current = progress;
  let inFlight: number | undefined;
  const job: SendJob = {
    openid: 'u1',
    jobId: 'j1',
    kind: 'text',
    progress: {
      get current() {
        return current;
      },
      save(next) {
        current = next;
        writes.push(next);
        return Promise.resolve();
      },
      keep(next) {
        current = next;
      },
      encode: (next) => JSON.stringify({ progress: next }),
      saved(next) {
        current = next;
        writes.push(next);
      },
    },
    jobsOf: () => ['j1'],
    setInFlight: (p) => (inFlight = p),
    onInDoubt: (action) => doubts.push(action),
  };
  const logs = captureLogger();
  const deps = {
    api: { sendCustomMessage: (m: CustomMessage) => (sent.push(m), Promise.resolve()), typing: () => Promise.resolve() },
    log: logs.log,
    inDoubtSends,
  };
  return { deps, job, sent, writes, doubts, logs, current: () => current, inFlight: () => inFlight };
}

describe('sender', () => {
  it('sends the parts not sent yet, saving "part i done" for every part but the last', async () => {
    const s = setup({ parts, sent: 1 });
    await sendParts(s.deps, s.job);
    expect(s.sent.map((m) => (m as { text: { content: string } }).text.content)).toEqual(['two', 'three']);
    expect(s.writes.map((w) => w.sent)).toEqual([2]);
    expect(s.current().sent).toBe(3);
    expect(s.inFlight()).toBeUndefined();
  });

  it('skips a part in doubt in at-most-once mode, and reports it', async () => {
    const s = setup({ parts, sent: 1 }, 'skip');
    await resumeSend(s.deps, s.job);
    expect(s.doubts).toEqual(['skipped']);
    expect(s.current().sent).toBe(2);
    expect(s.logs.lines().find((l) => l.msg === 'send in doubt')).toMatchObject({ jobId: 'j1', part: 1, jobs: ['j1'] });
  });

  it('retries a part WeChat refused as not sent (no doubt)', async () => {
    const s = setup({ parts, sent: 1, notSent: true });
    await resumeSend(s.deps, s.job);
    expect(s.doubts).toEqual([]);
    expect(s.writes).toEqual([{ parts, sent: 1, notSent: undefined }]);
  });

  it('counts failed tries per errcode class and gives up past the budget', async () => {
    const s = setup({ parts, sent: 0, retries: { '-1': 2 } });
    const charged = await chargeFailedPart(s.deps, s.job, 0, new WechatApiError('/cgi-bin/message/custom/send', -1, 'system error'));
    expect(charged.giveUp).toMatchObject({ code: 'WX_ERR_RETRIES_SPENT' });
    expect(s.writes).toEqual([]);
    const t = setup({ parts, sent: 0 });
    const first = await chargeFailedPart(t.deps, t.job, 0, new WechatApiError('/cgi-bin/message/custom/send', 'network', 'reset'));
    expect(first).toEqual({ maybeSent: true });
    expect(t.writes).toEqual([{ parts, sent: 0, retries: { network: 1 }, notSent: undefined }]);
  });
});

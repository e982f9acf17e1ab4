/**
 * REPLY_MODE=passive across instances and crashes: two gateways behind WeChat (a retry may land on
 * either), a worker SIGKILLed mid-answer, a gateway SIGKILLed while it holds a request. The answer
 * is delivered exactly once, by whichever attempt (or the inbox) gets it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scrape, startReplyStack, type ReplyStack } from './support/reply-stack.js';

let stack: ReplyStack;

beforeAll(async () => {
  stack = await startReplyStack({
    mode: 'passive',
    gateways: 2,
    unverified: true,
    // A killed worker's job is taken over quickly.
    workerEnv: { WORKER_LOCK_DURATION_MS: '2000', WORKER_STALLED_INTERVAL_MS: '1000' },
  });
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

const textOf = (r: Awaited<ReturnType<ReplyStack['send']>>): string | undefined => (r.reply?.reply.kind === 'text' ? r.reply.reply.content : undefined);

describe('REPLY_MODE=passive with two gateways', () => {
  it('the retry lands on the other gateway and gets the answer; the first never answers', async () => {
    const r = await stack.send('f-two', { type: 'text', content: 'wait 7000 across' }, { route: (attempt) => attempt - 1 });
    expect(r.outcome).toBe('reply');
    expect(r.tries).toBe(2);
    expect(textOf(r)).toBe('答：wait 7000 across');
    expect(await scrape(stack.gatewayMetricsUrls[1]!, 'wxrelay_answers_total', { channel: 'passive-2' })).toBe(1);
    expect(await scrape(stack.gatewayMetricsUrls[0]!, 'wxrelay_answers_total')).toBe(0);
    expect(await scrape(stack.gatewayMetricsUrls[0]!, 'wxrelay_gateway_hold_seconds_count', { result: 'lapsed' })).toBe(1);
  }, 30_000);

  it('a worker SIGKILLed mid-answer: another takes the job over and the answer still arrives, once', async () => {
    const sending = stack.send('f-worker', { type: 'text', content: 'wait 4000 survive' });
    await expect.poll(() => stack.llm.requests.some((q) => JSON.stringify(q).includes('wait 4000 survive')), { timeout: 5_000 }).toBe(true);
    const victim = stack.workers[0]!;
    victim.proc.kill('SIGKILL');
    await victim.exited;
    await stack.startWorker();
    const first = await sending;
    // The new worker asks the LLM again (the answer was not saved) and records it: a later attempt
    // gets it, or the placeholder went out and the next message fetches it.
    let answer = textOf(first);
    if (answer === '正在思考中，回复任意文字获取回答') {
      await expect.poll(async () => (await scrape(stack.workerMetricsUrls.at(-1)!, 'wxrelay_inbox_pending_answers')) === 1 && stack.llm.requests.filter((q) => JSON.stringify(q).includes('wait 4000 survive')).length >= 2, { timeout: 30_000 }).toBe(true);
      await new Promise((res) => setTimeout(res, 4_500));
      answer = textOf(await stack.send('f-worker', { type: 'text', content: 'and?' }));
    }
    expect(answer).toBe('答：wait 4000 survive');
    expect(first.tries).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('a gateway SIGKILLed while it holds the request: the retry on the other one gets the answer', async () => {
    const sending = stack.send('f-gateway', { type: 'text', content: 'wait 3000 held' }, { route: (attempt) => (attempt === 1 ? 0 : 1) });
    await expect.poll(() => stack.llm.requests.some((q) => JSON.stringify(q).includes('wait 3000 held')), { timeout: 5_000 }).toBe(true);
    const victim = stack.gateways[0]!;
    victim.proc.kill('SIGKILL');
    await victim.exited;
    const r = await sending;
    expect(r.attempts[0]?.error).toMatch(/network error/);
    expect(r.outcome).toBe('reply');
    expect(textOf(r)).toBe('答：wait 3000 held');
    expect(await scrape(stack.gatewayMetricsUrls[1]!, 'wxrelay_answers_total')).toBe(2);
  }, 30_000);

  it('made no customer-service call', () => {
    expect(stack.wechat.deliveries).toHaveLength(0);
    expect(stack.wechat.calls.filter((c) => c.path.startsWith('/cgi-bin/message/custom'))).toHaveLength(0);
  });
});

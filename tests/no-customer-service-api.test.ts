/**
 * REPLY_MODE=customer-service on an account without the customer-service API (the simulator's
 * unverified account: 48001 on every send): each failure is counted, and the fix is logged once
 * per process, loudly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scrape, startReplyStack, type ReplyStack } from './support/reply-stack.js';

let stack: ReplyStack;

beforeAll(async () => {
  stack = await startReplyStack({ mode: 'customer-service', unverified: true });
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

describe('48001 in customer-service mode', () => {
  it('is counted per send and logged once per process with the fix (REPLY_MODE=passive)', async () => {
    for (const user of ['n-1', 'n-2', 'n-3']) expect((await stack.send(user, { type: 'text', content: 'hello' })).outcome).toBe('ack');
    const worker = stack.workers[0]!;
    await expect.poll(() => scrape(stack.workerMetricsUrls[0]!, 'wxrelay_worker_no_customer_service_api_total'), { timeout: 20_000 }).toBe(3);
    const loud = worker.lines.filter((l) => l.includes('48001') && l.includes('REPLY_MODE=passive'));
    expect(loud).toHaveLength(1);
    expect(JSON.parse(loud[0]!)).toMatchObject({ level: 50, fix: 'REPLY_MODE=passive' });
    expect(stack.wechat.deliveries).toHaveLength(0);
  }, 60_000);
});

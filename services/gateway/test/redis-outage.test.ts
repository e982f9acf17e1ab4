import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { dedupHits, plainRequest, textXml, uniqueMsgId, useGateway } from './support.js';

/** Polls `fn` until it returns true (no wall-clock assertion: only a generous give-up). */
async function eventually(fn: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('condition not met in time');
}

describe('when Redis goes away', () => {
  const gw = useGateway({ ENQUEUE_TIMEOUT_MS: '500' }, { private: true });

  const send = (xml = textXml()) => gw.app.inject({ method: 'POST', ...{ url: plainRequest(xml).url, payload: xml } });

  it('answers success while Redis is up', async () => {
    expect((await send()).body).toBe('success');
    expect((await gw.app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });

  it('answers 503 — never success — while Redis is down, and /healthz says 503', async () => {
    await gw.redis.stop();
    const answers = await Promise.all(Array.from({ length: 20 }, () => send()));
    for (const res of answers) {
      expect(res.statusCode).toBe(503);
      expect(res.body).not.toBe('success');
    }
    expect((await gw.app.inject({ url: '/healthz' })).statusCode).toBe(503);
    // A stale timestamp needs a Redis lookup (retry or replay?): 503 too, never a 500.
    const xml = textXml();
    const stale = plainRequest(xml, { timestamp: String(Math.floor(Date.now() / 1000) - 3600) });
    expect((await gw.app.inject({ method: 'POST', url: stale.url, payload: xml })).statusCode).toBe(503);
    const refusals = gw.logs.records().filter((r) => r.code === 'WX_ERR_ENQUEUE');
    expect(refusals.length).toBeGreaterThanOrEqual(20);
  });

  it('recovers by itself when Redis returns: the same message WeChat retries is queued once', async () => {
    const msgId = uniqueMsgId();
    const xml = textXml({ msgId });
    await gw.redis.start();
    await eventually(async () => (await gw.app.inject({ url: '/healthz' })).statusCode === 200);
    await eventually(async () => (await send(xml)).body === 'success');
    expect((await send(xml)).body).toBe('success');
    const waiting = await gw.app.inboundQueue.getWaiting();
    const matching = waiting.filter((j) => (j.data as { message: { msgId?: string } }).message.msgId === msgId);
    expect(matching).toHaveLength(1);
  });
});

describe('when Redis is up but too slow to take a job', () => {
  const gw = useGateway({ ENQUEUE_TIMEOUT_MS: '300' }, { private: true });

  it('answers 503 at the deadline; the add lands later, and WeChat\'s retry is answered as a duplicate', async () => {
    const xml = textXml({ msgId: uniqueMsgId() });
    const send = () => gw.app.inject({ method: 'POST', url: plainRequest(xml).url, payload: xml });
    const admin = new Redis(gw.redis.url);
    try {
      // Writes (the add script among them) wait in Redis for 1.5 s, well past the 300 ms budget.
      await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE');
      const first = await send();
      expect(first.statusCode).toBe(503);
      expect(gw.logs.records().some((r) => r.code === 'WX_ERR_ENQUEUE' && JSON.stringify(r).includes('within 300 ms'))).toBe(true);

      // The command was sent, so Redis runs it once the pause ends: the message is queued after all.
      await eventually(async () => (await gw.app.inboundQueue.getWaitingCount()) === 1);
      const retry = await send();
      expect(retry.body).toBe('success');
      expect(await dedupHits(gw.app)).toBe(1);
      expect(await gw.app.inboundQueue.getWaitingCount()).toBe(1);
    } finally {
      admin.disconnect();
    }
  });
});

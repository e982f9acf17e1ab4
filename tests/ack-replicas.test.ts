/**
 * REDIS_ACK_REPLICAS (issue #14): acks that survive a failover. Real processes throughout: Sentinel
 * from the testkit (a master, one replica, three sentinels), the built gateway, the built worker,
 * and the simulator's fake WeChat API recording every customer-service send.
 *
 * One run, done twice (REDIS_ACK_REPLICAS=1, then 0), each on its own fresh Sentinel setup:
 *
 * 1. A steady stream of signed plain-mode text pushes, each from its own user with its own text,
 *    from a few senders. A push answered 503 is retried like WeChat does (three attempts in all,
 *    here a second apart); `success` ends it.
 * 2. The replica falls behind: `CLIENT PAUSE <ms> ALL` on it. While paused it stops applying the
 *    master's stream (it still reads it), as a replica does that is busy, swapping or behind a slow
 *    link. This is what makes loss likely rather than lucky: on one machine a healthy replica is
 *    microseconds behind, and a kill would rarely catch anything in flight.
 * 3. While the replica is paused, the master is SIGKILLed. The replica drops what it had read but not
 *    applied (Redis discards a dead master's unprocessed stream), and the sentinels promote it.
 * 4. The killed node comes back as a replica of the new master (`startReplica` on its port, as its
 *    supervisor would restart it): with one replica and REDIS_ACK_REPLICAS=1, nothing can be acked
 *    until a replica is there again.
 * 5. The stream stops; a worker starts and drains the queue through the sentinels. Every message then
 *    in Redis is answered; one acked but missing from Redis is never answered: lost.
 *
 * The worker starts only after the failover on purpose: REDIS_ACK_REPLICAS covers the gateway's ack.
 * The worker's own writes (job completion, the send ledger) are still replicated asynchronously, and
 * a worker acting during the failover can act on a job the failover then drops, or redo a send whose
 * record the failover dropped. That is the worker's side, not measured here.
 *
 * Asserted (both runs): 503s while there is no master; `success` again afterwards, without restarting
 * the gateway. With REDIS_ACK_REPLICAS=1: no `success` answered between the pause and the replica's
 * return (nothing could confirm it); the refusals are counted in
 * `wxrelay_gateway_ack_replica_shortfalls_total`; and every acked message is answered exactly once.
 * With REDIS_ACK_REPLICAS=0 the number of acked messages the failover lost is printed, not asserted:
 * it is the trade-off this test documents.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INBOUND_QUEUE } from '@wxrelay/shared';
import { createInboundXmlBuilder, buildCallbackRequest, startFakeWechatApi, type FakeWechatApi } from '@wxrelay/simulator';
import { buildIfStale, freePort, spawnService, startRedisSentinel, type SpawnedService, type TestRedisSentinel } from '@wxrelay/testkit';
import { scrape } from './support/reply-stack.js';

const APP = { appId: 'wx5823bf96d3bd56c7', appSecret: '0123456789abcdef0123456789abcdef' } as const;
const TOKEN = 'acktoken';
const ACCOUNT = 'gh_5ac4e2e00014';

/** The gateway's budget for Redis (and, with REDIS_ACK_REPLICAS, the replicas) per batch. */
const ENQUEUE_TIMEOUT_MS = 500;
const SENDERS = 4;
/** Between a sender's messages (a steady stream, not a flood the worker would take long to drain). */
const PACE_MS = 25;
/** WeChat's attempts per message, and the pause between them (WeChat waits 5 s; shortened). */
const ATTEMPTS = 3;
const RETRY_AFTER_MS = 1_000;
/** How long the replica stays paused, and how far into the pause the master dies. */
const PAUSE_MS = 2_000;
const KILL_AFTER_MS = 1_200;

interface Attempt {
  readonly sentAt: number;
  readonly answeredAt: number;
  readonly status: number;
  readonly body: string;
}

interface Sent {
  readonly text: string;
  readonly attempts: Attempt[];
  acked: boolean;
}

interface RunResult {
  readonly ackReplicas: number;
  readonly messages: Sent[];
  readonly attempts: Attempt[];
  /** Test-process clock (ms) of each step. */
  readonly pausedAt: number;
  readonly killedAt: number;
  readonly failedOverAt: number;
  readonly replicaStartAt: number;
  readonly replicaUpAt: number;
  /** Customer-service sends per message text. */
  readonly deliveries: Map<string, number>;
  readonly shortfalls: number;
  readonly gatewayLines: readonly string[];
}

function unique(tag: string): string {
  return `${tag}-${randomBytes(5).toString('hex')}`;
}

async function run(ackReplicas: 0 | 1): Promise<RunResult> {
  const sentinel: TestRedisSentinel = await startRedisSentinel();
  const wechat: FakeWechatApi = await startFakeWechatApi({ appId: APP.appId, appSecret: APP.appSecret, enforceWindow: false });
  const prefix = unique('ack');
  const port = await freePort();
  const metricsPort = await freePort();
  const procs: SpawnedService[] = [];
  const reader = new Redis({ sentinels: sentinel.sentinels.map((s) => ({ ...s })), name: sentinel.name, maxRetriesPerRequest: null });
  reader.on('error', () => undefined);
  try {
    const common = { WECHAT_APP_ID: APP.appId, ...sentinel.env, QUEUE_PREFIX: prefix, LOG_LEVEL: 'info' };
    const gateway = spawnService('services/gateway/dist/main.js', {
      ...common,
      WECHAT_TOKEN: TOKEN,
      PORT: String(port),
      HOST: '127.0.0.1',
      METRICS_PORT: String(metricsPort),
      ENQUEUE_TIMEOUT_MS: String(ENQUEUE_TIMEOUT_MS),
      REDIS_ACK_REPLICAS: String(ackReplicas),
    });
    procs.push(gateway);
    await gateway.waitForLine(/gateway listening/, 30_000);
    const gatewayUrl = `http://127.0.0.1:${port}/wx`;

    // The stream.
    const xml = createInboundXmlBuilder({ account: ACCOUNT });
    const messages: Sent[] = [];
    const attempts: Attempt[] = [];
    let streaming = true;
    const post = async (body: string): Promise<Attempt> => {
      const req = buildCallbackRequest({ gatewayUrl, token: TOKEN, appId: APP.appId, mode: 'plain', xml: body });
      const sentAt = performance.now();
      try {
        const res = await fetch(req.url, { method: 'POST', body: req.body, headers: { 'content-type': 'text/xml' }, signal: AbortSignal.timeout(5_000) });
        return { sentAt, answeredAt: performance.now(), status: res.status, body: await res.text() };
      } catch (err) {
        return { sentAt, answeredAt: performance.now(), status: 0, body: String(err) };
      }
    };
    const sender = async (n: number): Promise<void> => {
      for (let i = 0; streaming; i++) {
        const text = `ack${ackReplicas}-s${n}-m${i}-${randomBytes(3).toString('hex')}`;
        const built = xml.build(`o${randomBytes(12).toString('hex')}`, { type: 'text', content: text });
        const sent: Sent = { text, attempts: [], acked: false };
        messages.push(sent);
        for (let a = 0; a < ATTEMPTS; a++) {
          if (a > 0) await sleep(RETRY_AFTER_MS);
          const attempt = await post(built.xml);
          sent.attempts.push(attempt);
          attempts.push(attempt);
          if (attempt.status === 200 && attempt.body === 'success') {
            sent.acked = true;
            break;
          }
        }
        await sleep(PACE_MS);
      }
    };
    const senders = Array.from({ length: SENDERS }, (_, n) => sender(n));
    const ackedSince = (t: number): number => attempts.filter((a) => a.sentAt >= t && a.body === 'success').length;

    try {
      await expect.poll(() => ackedSince(0), { timeout: 10_000 }).toBeGreaterThanOrEqual(50);

      // The replica falls behind, then the master dies.
      const [replica] = await sentinel.replicaPorts();
      if (replica === undefined) throw new Error('no replica');
      const replicaClient = new Redis({ host: '127.0.0.1', port: replica, maxRetriesPerRequest: 0 });
      await replicaClient.call('CLIENT', 'PAUSE', String(PAUSE_MS), 'ALL');
      const pausedAt = performance.now();
      replicaClient.disconnect();
      await sleep(KILL_AFTER_MS);
      const oldMaster = await sentinel.killMaster();
      const killedAt = performance.now();
      await sentinel.waitForFailover(oldMaster);
      const failedOverAt = performance.now();

      // The killed node comes back, as a replica of the new master.
      const replicaStartAt = performance.now();
      await sentinel.startReplica(oldMaster);
      const replicaUpAt = performance.now();

      // Acks resume by themselves; keep the stream on a little longer.
      await expect.poll(() => ackedSince(replicaUpAt), { timeout: 20_000 }).toBeGreaterThanOrEqual(20);
      await sleep(500);
      streaming = false;
      await Promise.all(senders);

      const shortfalls = await scrape(`http://127.0.0.1:${metricsPort}/metrics`, 'wxrelay_gateway_ack_replica_shortfalls_total');

      // Now a worker drains whatever Redis holds.
      const worker = spawnService('services/worker/dist/main.js', {
        ...common,
        WECHAT_APP_SECRET: APP.appSecret,
        WECHAT_API_BASE_URL: wechat.url,
        METRICS_PORT: '0',
        WORKER_CONCURRENCY: '50',
      });
      procs.push(worker);
      await worker.waitForLine(/worker started/, 30_000);
      const key = (s: string): string => `${prefix}:${INBOUND_QUEUE}:${s}`;
      const backlog = async (): Promise<number> => {
        const [wait, active, prioritized, delayed] = await Promise.all([reader.llen(key('wait')), reader.llen(key('active')), reader.zcard(key('prioritized')), reader.zcard(key('delayed'))]);
        return wait + active + prioritized + delayed;
      };
      let stable = 0;
      let last = -1;
      const drainDeadline = Date.now() + 45_000;
      while (stable < 3) {
        if (Date.now() > drainDeadline) throw new Error(`the worker did not drain the queue: backlog ${await backlog()}, ${wechat.deliveries.length} deliveries`);
        await sleep(250);
        const count = wechat.deliveries.length;
        stable = (await backlog()) === 0 && count === last ? stable + 1 : 0;
        last = count;
      }

      const deliveries = new Map<string, number>();
      for (const d of wechat.deliveries) {
        const content = (d.body as { text?: { content?: string } }).text?.content ?? '';
        const text = /你说：(.*)$/s.exec(content)?.[1] ?? content;
        deliveries.set(text, (deliveries.get(text) ?? 0) + 1);
      }
      return { ackReplicas, messages, attempts, pausedAt, killedAt, failedOverAt, replicaStartAt, replicaUpAt, deliveries, shortfalls, gatewayLines: gateway.lines };
    } finally {
      streaming = false;
      await Promise.allSettled(senders);
    }
  } finally {
    reader.disconnect();
    await Promise.allSettled(procs.map((p) => p.stop()));
    await wechat.close();
    await sentinel.close();
  }
}

/** What a run shows, in numbers (printed for both, asserted where guaranteed). */
function summary(r: RunResult) {
  const acked = r.messages.filter((m) => m.acked);
  const lost = acked.filter((m) => (r.deliveries.get(m.text) ?? 0) === 0);
  const repeated = acked.filter((m) => (r.deliveries.get(m.text) ?? 0) > 1);
  const window = (from: number, to: number) => r.attempts.filter((a) => a.answeredAt >= from && a.answeredAt < to);
  const unconfirmable = window(r.pausedAt, r.replicaStartAt).filter((a) => a.sentAt >= r.pausedAt);
  const ackedWhilePaused = window(r.pausedAt, r.killedAt).filter((a) => a.body === 'success').length;
  return {
    REDIS_ACK_REPLICAS: r.ackReplicas,
    messages: r.messages.length,
    acked: acked.length,
    'acked, then lost in the failover': lost.length,
    'acked, answered more than once': repeated.length,
    'never acked (3 attempts)': r.messages.length - acked.length,
    attempts: r.attempts.length,
    '503 answers': r.attempts.filter((a) => a.status === 503).length,
    'success answered while the replica lagged (pause → kill)': ackedWhilePaused,
    'success answered pause → replica back, sent after the pause': unconfirmable.filter((a) => a.body === 'success').length,
    'ack replica shortfalls (gateway metric)': r.shortfalls,
    'replica paused → master killed, ms': Math.round(r.killedAt - r.pausedAt),
    'kill → new master, ms': Math.round(r.failedOverAt - r.killedAt),
    'new master → replica back, ms': Math.round(r.replicaUpAt - r.failedOverAt),
    lostSample: lost.slice(0, 3).map((m) => m.text),
    unconfirmable,
    acks: acked,
  };
}

describe('REDIS_ACK_REPLICAS under a Sentinel failover (master SIGKILLed while its replica lags)', () => {
  const results = new Map<number, RunResult>();

  beforeAll(() => {
    buildIfStale(['packages/simulator', 'services/gateway', 'services/worker']);
  }, 120_000);

  afterAll(() => {
    // The trade-off, side by side, in the test output.
    const rows = [...results.values()].map((r) => {
      const { unconfirmable: _u, acks: _a, lostSample: _l, ...numbers } = summary(r);
      return numbers;
    });
    if (rows.length > 0) console.table(rows);
  });

  it('REDIS_ACK_REPLICAS=1: 503 while nothing can confirm, acks again by itself, every acked message answered exactly once', async () => {
    const r = await run(1);
    results.set(1, r);
    const s = summary(r);
    console.log('REDIS_ACK_REPLICAS=1', JSON.stringify({ ...s, unconfirmable: s.unconfirmable.length, acks: s.acks.length }));

    expect(r.gatewayLines.some((l) => l.includes('acks wait for 1 replica(s)'))).toBe(true);
    // Between the pause and the replica's return no replica could confirm a write made after the
    // pause: every such request was refused, none acked.
    expect(s.unconfirmable.length).toBeGreaterThan(0);
    for (const a of s.unconfirmable) expect([a.status, a.body]).not.toEqual([200, 'success']);
    expect(r.shortfalls).toBeGreaterThan(0);
    // 503 during the failover, success again afterwards, from the same gateway process.
    expect(r.attempts.some((a) => a.status === 503 && a.sentAt >= r.killedAt && a.answeredAt < r.failedOverAt)).toBe(true);
    expect(r.attempts.some((a) => a.body === 'success' && a.sentAt >= r.replicaUpAt)).toBe(true);
    // Every acked message was answered, once: none lost, none twice.
    expect(s.acks.length).toBeGreaterThan(0);
    expect(s['acked, then lost in the failover']).toBe(0);
    expect(s['acked, answered more than once']).toBe(0);
    for (const m of s.acks) expect(r.deliveries.get(m.text), m.text).toBe(1);
  }, 90_000);

  it('REDIS_ACK_REPLICAS=0 (the default): the same failover; the acked messages it lost are reported', async () => {
    const r = await run(0);
    results.set(0, r);
    const s = summary(r);
    console.log('REDIS_ACK_REPLICAS=0', JSON.stringify({ ...s, unconfirmable: s.unconfirmable.length, acks: s.acks.length }));

    expect(r.gatewayLines.some((l) => l.includes('acks wait for'))).toBe(false);
    expect(r.shortfalls).toBe(0);
    expect(r.attempts.some((a) => a.status === 503 && a.sentAt >= r.killedAt && a.answeredAt < r.failedOverAt)).toBe(true);
    expect(r.attempts.some((a) => a.body === 'success' && a.sentAt >= r.failedOverAt)).toBe(true);
    // How many were lost — and answered twice: a dedup key the failover lost no longer guards a
    // retry — is the trade-off, printed above and in the table after the tests; nothing is promised.
  }, 90_000);
});

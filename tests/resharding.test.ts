/**
 * Changing QUEUE_SHARDS from 1 to 3 on a running system, under a steady load, as README "Scaling" →
 * "Changing QUEUE_SHARDS" says to: real gateways and workers (`node services/<name>/dist/main.js`)
 * on a real 3-master Redis Cluster, WeChat's API faked by the simulator, users writing all along
 * and WeChat's retries of their messages landing on whichever gateway (also one of the other
 * setting while the gateways are restarted one by one). Nothing is lost, nothing is answered twice,
 * every user's answers come in the order they wrote, and the new shards land on the three masters.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keySlot, queueLayout, type QueueShard } from '@wxrelay/shared';
import { createRedisConnection, type RedisClient } from '@wxrelay/shared/redis';
import { buildIfStale, freePort, spawnService, startRedisCluster, waitFor, type SpawnedService, type TestRedisCluster } from '@wxrelay/testkit';
import { createInboundXmlBuilder, sendCallback, startFakeWechatApi, type FakeWechatApi } from '@wxrelay/simulator';

const APP = { appId: 'wx5823bf96d3bd56c7', appSecret: '0123456789abcdef0123456789abcdef' } as const;
const TOKEN = 'reshardtoken';
const ACCOUNT = 'gh_5ac4e2e00003';
const USERS = 30;

let cluster: TestRedisCluster;
let wechat: FakeWechatApi;
let reader: RedisClient;
const services: SpawnedService[] = [];
const prefix = `{rs-${randomBytes(4).toString('hex')}}`;

beforeAll(async () => {
  buildIfStale(['packages/simulator', 'services/gateway', 'services/worker']);
  [cluster, wechat] = await Promise.all([startRedisCluster(), startFakeWechatApi({ appId: APP.appId, appSecret: APP.appSecret })]);
  reader = createRedisConnection({ kind: 'cluster', nodes: cluster.nodes, tls: false }, 'worker');
}, 90_000);
afterAll(async () => {
  await Promise.all(services.map((s) => s.stop('SIGKILL').catch(() => undefined)));
  reader?.disconnect();
  await wechat?.close();
  await cluster?.close();
});

/** QUEUE_SHARDS and QUEUE_SHARDS_ALSO of a service. */
type Setting = readonly [shards: number, also?: number];

function common([shards, also]: Setting): Record<string, string> {
  return {
    ...cluster.env,
    REDIS_URL: 'redis://127.0.0.1:1', // set, as compose sets it, and not used
    WECHAT_APP_ID: APP.appId,
    QUEUE_PREFIX: prefix,
    QUEUE_SHARDS: String(shards),
    QUEUE_SHARDS_ALSO: String(also ?? 0),
    LOG_LEVEL: 'info',
    METRICS_PORT: '0',
  };
}

interface Gateway {
  readonly svc: SpawnedService;
  readonly url: string;
}

async function startGateway(setting: Setting): Promise<Gateway> {
  const port = await freePort();
  const svc = spawnService('services/gateway/dist/main.js', { ...common(setting), WECHAT_TOKEN: TOKEN, PORT: String(port), HOST: '127.0.0.1' });
  services.push(svc);
  await svc.waitForLine(/gateway listening/, 30_000);
  return { svc, url: `http://127.0.0.1:${port}/wx` };
}

async function startWorker(setting: Setting): Promise<SpawnedService> {
  const svc = spawnService('services/worker/dist/main.js', {
    ...common(setting),
    WECHAT_APP_SECRET: APP.appSecret,
    WECHAT_API_BASE_URL: wechat.url,
    WORKER_CONCURRENCY: '20',
    WORKER_LOCK_DURATION_MS: '3000',
    WORKER_STALLED_INTERVAL_MS: '1000',
  });
  services.push(svc);
  await svc.waitForLine(/worker started/, 30_000);
  return svc;
}

/**
 * Users writing all along, each message after the last was acknowledged (as in a chat), through
 * the gateways in `active` (changed by the test as it restarts them); now and then WeChat sends a
 * message again to another gateway (its retry of a request it thought lost).
 */
function startLoad(active: { current: readonly Gateway[] }) {
  // CreateTime a little ahead: the quota ledger then dates each message by the gateway's clock (to
  // the ms) rather than by CreateTime's whole second, as a user writing this fast would need.
  const xml = createInboundXmlBuilder({ account: ACCOUNT, now: () => Date.now() + 2_000 });
  const users = Array.from({ length: USERS }, (_, i) => `oRS${i}${randomBytes(5).toString('hex')}`);
  const sent = new Map(users.map((u) => [u, [] as string[]]));
  const failures: string[] = [];
  let stop = false;
  let turn = 0;
  const pick = (): Gateway => active.current[turn++ % active.current.length]!;
  const post = (body: string, first: Gateway) => {
    let tries = 0;
    return sendCallback({
      gatewayUrl: first.url,
      token: TOKEN,
      appId: APP.appId,
      mode: 'plain',
      xml: body,
      retryDelayMs: 100,
      // The first try to the gateway picked, a retry to any gateway up now.
      fetch: (input, init) => {
        tries += 1;
        const target = tries === 1 && active.current.includes(first) ? first : pick();
        const url = new URL(input instanceof Request ? input.url : input);
        url.host = new URL(target.url).host;
        return fetch(url, init);
      },
    });
  };
  const loops = users.map(async (openid) => {
    for (let seq = 0; !stop; seq++) {
      const content = `${openid}-${seq}`;
      const built = xml.build(openid, { type: 'text', content });
      wechat.userInteracted(openid, 'message');
      const first = await post(built.xml, pick());
      if (first.outcome !== 'ack') failures.push(`${content}: ${first.outcome} ${first.error ?? ''}`);
      else sent.get(openid)!.push(content);
      if (seq % 4 === 1) {
        // WeChat's retry of the same push, on another gateway: acknowledged, never queued twice.
        const again = await post(built.xml, pick());
        if (again.outcome !== 'ack') failures.push(`${content} (again): ${again.outcome} ${again.error ?? ''}`);
      }
      await sleep(250 + Math.floor(Math.random() * 200));
    }
  });
  return {
    users,
    sent,
    failures,
    async stop() {
      stop = true;
      await Promise.all(loops);
    },
  };
}

/** Jobs not finished in `queue`: waiting, active, delayed, prioritized. */
async function pending(queue: QueueShard): Promise<number> {
  const k = (type: string) => `${queue.jobPrefix}${type}`;
  const [wait, active, delayed, prioritized] = await Promise.all([reader.llen(k('wait')), reader.llen(k('active')), reader.zcard(k('delayed')), reader.zcard(k('prioritized'))]);
  return wait + active + delayed + prioritized;
}

/** What the echo answered each user, in the order WeChat received it. */
function answered(openid: string): string[] {
  return wechat.deliveries
    .filter((d) => d.touser === openid)
    .flatMap((d) => [...String((d.body as { text?: { content?: string } }).text?.content ?? '').matchAll(/你说：(\S+)/g)].map((m) => m[1]!));
}

/** On a timeout: what each queue holds and which users lag, then the error again. */
function explain(load: { users: readonly string[]; sent: ReadonlyMap<string, readonly string[]> }, queues: readonly QueueShard[]) {
  return async (err: unknown): Promise<never> => {
    const lines: string[] = [];
    for (const q of queues) {
      const failed = await reader.zrangebyscore(`${q.jobPrefix}failed`, '-inf', '+inf', 'LIMIT', 0, 5);
      const reasons = await Promise.all(failed.map((id) => reader.hget(`${q.jobPrefix}${id}`, 'failedReason')));
      lines.push(`${q.name}: ${await pending(q)} unfinished, ${await reader.zcard(`${q.jobPrefix}failed`)} failed${reasons.length > 0 ? ` (${reasons.join('; ')})` : ''}`);
    }
    for (const u of load.users) {
      const got = answered(u);
      const sent = load.sent.get(u)!;
      if (got.length !== sent.length) lines.push(`${u}: ${sent.length} sent, ${got.length} answered; first missing ${sent.find((c) => !got.includes(c))}`);
    }
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${lines.join('\n')}`);
  };
}

describe('changing QUEUE_SHARDS from 1 to 3 under load', () => {
  it('loses nothing, answers nothing twice, keeps each user\'s order; the new shards land on the three masters', async () => {
    const before = queueLayout(prefix, 1).queues[0]!;
    const after = queueLayout(prefix, 3).queues;

    // Running on one queue.
    const active: { current: readonly Gateway[] } = { current: [] };
    const g0 = await startGateway([1]);
    const w0 = await startWorker([1]);
    active.current = [g0];
    const load = startLoad(active);
    await sleep(1_500);

    // Step 1: every service learns the new layout (QUEUE_SHARDS_ALSO=3); messages still go to the one queue.
    const g1 = await startGateway([1, 3]);
    const w1 = await startWorker([1, 3]);
    active.current = [g0, g1];
    await sleep(500);
    active.current = [g1];
    await Promise.all([g0.svc.stop(), w0.stop()]);
    await sleep(1_000);

    // Step 2: QUEUE_SHARDS=3, QUEUE_SHARDS_ALSO=1, one instance at a time: both settings side by
    // side. The workers are restarted last, and the gateways switch while none runs: every user's
    // messages pile up in both layouts, interleaved, and the new workers must answer them in order.
    await w1.stop();
    const g2 = await startGateway([3, 1]);
    active.current = [g1, g2];
    await sleep(2_500);
    const w2 = await startWorker([3, 1]);
    await sleep(500);
    active.current = [g2];
    await g1.svc.stop();
    await sleep(1_000);
    // Step 3: once the old queue is drained, QUEUE_SHARDS=3 alone.
    await waitFor(async () => (await pending(before)) === 0, 30_000, 'the old queue to drain').catch(explain(load, [before, ...after]));
    const g3 = await startGateway([3]);
    const w3 = await startWorker([3]);
    active.current = [g2, g3];
    await sleep(500);
    active.current = [g3];
    await Promise.all([g2.svc.stop(), w2.stop()]);
    await sleep(1_500);
    await load.stop();

    expect(load.failures).toEqual([]);
    const total = [...load.sent.values()].reduce((n, s) => n + s.length, 0);
    expect(total).toBeGreaterThan(USERS * 15);
    await waitFor(async () => load.users.every((u) => answered(u).length >= load.sent.get(u)!.length) && (await Promise.all(after.map(pending))).every((n) => n === 0), 30_000, 'every message to be answered').catch(explain(load, [before, ...after]));

    // Every message answered exactly once, in each user's order.
    for (const openid of load.users) expect(answered(openid), openid).toEqual(load.sent.get(openid));
    // Nothing failed; every queue empty of unfinished jobs.
    for (const queue of [before, ...after]) {
      expect(await reader.zcard(`${queue.jobPrefix}failed`), queue.name).toBe(0);
      expect(await pending(queue), queue.name).toBe(0);
    }
    // The layouts really overlapped: users with a message in the new layout queued before one of
    // theirs in the old (the order above held across them).
    const queuedAt = async (queue: QueueShard): Promise<{ user: string; at: number }[]> => {
      const ids = await reader.zrange(`${queue.jobPrefix}completed`, '0', '-1');
      const pipeline = reader.pipeline();
      for (const id of ids) pipeline.hmget(`${queue.jobPrefix}${id}`, 'timestamp', 'data');
      return ((await pipeline.exec()) ?? []).map(([, v]) => {
        const [at, data] = v as [string, string];
        return { user: (JSON.parse(data) as { message: { fromUserName: string } }).message.fromUserName, at: Number(at) };
      });
    };
    const old = await queuedAt(before);
    const moved = (await Promise.all(after.map(queuedAt))).flat();
    const interleaved = load.users.filter((u) => {
      const firstNew = Math.min(...moved.filter((j) => j.user === u).map((j) => j.at));
      return old.some((j) => j.user === u && j.at > firstNew);
    });
    expect(interleaved.length).toBeGreaterThan(0);
    // Both layouts did work, the new one on every shard; the shards are on the three masters.
    expect(await reader.zcard(`${before.jobPrefix}completed`)).toBeGreaterThan(0);
    const masters = new Set<number>();
    const ranges = (await reader.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, ...unknown[]], ...unknown[]][];
    for (const queue of after) {
      expect(await reader.zcard(`${queue.jobPrefix}completed`), queue.name).toBeGreaterThan(0);
      const slot = keySlot(queue.prefix);
      masters.add(Number(ranges.find(([from, to]) => slot >= from && slot <= to)![2][1]));
    }
    expect(masters.size).toBe(3);
    expect(w3.proc.exitCode).toBeNull();
  }, 85_000);
});

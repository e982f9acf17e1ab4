import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '@wxrelay/testkit';
import { toInboundJob } from './contract.js';
import { createShardedProducer, type ShardedProducer } from './sharded-producer.js';
import type { InboundMessage } from '../protocol/messages.js';

/**
 * The gateway's sharded producer against a real Redis: a message goes to its user's shard, and while
 * QUEUE_SHARDS changes gateways of both settings (a rolling restart) queue each message once,
 * whichever of them takes which of WeChat's attempts, and each learns which queue holds it.
 */

let redis: TestRedis;
let conn: Redis;
const producers: ShardedProducer[] = [];

beforeAll(async () => {
  redis = await startRedis();
  conn = new Redis(redis.url);
});
afterAll(async () => {
  for (const p of producers) await p.close();
  conn.disconnect();
  await redis.close();
});

function producer(prefix: string, count: number, also?: number): ShardedProducer {
  const p = createShardedProducer({ redis: conn, prefix, shards: { count, ...(also === undefined ? {} : { also }) }, timeoutMs: 2_000 });
  producers.push(p);
  return p;
}

let seq = 0;
function message(openid: string): InboundMessage {
  seq += 1;
  return { kind: 'text', toUserName: 'gh_test', fromUserName: openid, createTime: Math.floor(Date.now() / 1000), msgId: `${Date.now()}${String(seq).padStart(5, '0')}`, content: `m${seq}` };
}

/** Every job of `openid`'s messages in every queue of both layouts, as `<queue name> <job id>`. */
async function jobsIn(p: ShardedProducer): Promise<string[]> {
  const found: string[] = [];
  for (const q of p.layouts.all) {
    const ids = await conn.lrange(`${q.jobPrefix}wait`, 0, -1);
    for (const id of ids) found.push(`${q.name} ${id}`);
  }
  return found.sort();
}

describe('the sharded producer (real Redis)', () => {
  it("puts each message on its user's shard, and a retry finds it there", async () => {
    const prefix = `{${randomBytes(4).toString('hex')}}`;
    const p = producer(prefix, 3);
    expect(p.producers).toHaveLength(3);
    const users = Array.from({ length: 12 }, (_, i) => `o${i}${randomBytes(6).toString('hex')}`);
    for (const openid of users) {
      const job = toInboundJob(message(openid), 'plain', Date.now());
      const placed = await p.place(job.jobId, job.payload);
      expect(placed).toEqual({ held: false, queue: p.layouts.current.shardFor(openid) });
      expect(await p.place(job.jobId, job.payload)).toEqual({ held: true, queue: placed.queue });
      expect(await p.isQueued(job.jobId, openid)).toBe(true);
      expect(await conn.exists(`${placed.queue.jobPrefix}${job.jobId}`)).toBe(1);
    }
    expect(new Set(users.map((u) => p.layouts.current.shardFor(u).index)).size).toBe(3);
    expect((await jobsIn(p)).length).toBe(users.length);
  });

  for (const [from, to] of [
    [1, 3],
    [3, 1],
  ] as const) {
    it(`while QUEUE_SHARDS changes ${from} → ${to}: gateways of both settings queue each message once, wherever WeChat's attempts land`, async () => {
      const prefix = `{${randomBytes(4).toString('hex')}}`;
      const before = producer(prefix, from, to); // not switched yet: routes to the old layout, knows the new
      const after = producer(prefix, to, from); // switched
      const users = Array.from({ length: 8 }, (_, i) => `o${i}${randomBytes(6).toString('hex')}`);
      const expected: string[] = [];
      for (const [i, openid] of users.entries()) {
        // First attempt on one, retries on both, in either order.
        const [first, second] = i % 2 === 0 ? [before, after] : [after, before];
        const job = toInboundJob(message(openid), 'plain', Date.now());
        const placed = await first.place(job.jobId, job.payload);
        expect(placed.held).toBe(false);
        expect(placed.queue).toEqual(first.layouts.current.shardFor(openid));
        for (const retry of [second, first, second]) {
          const again = await retry.place(job.jobId, job.payload);
          expect(again.held).toBe(true);
          expect(again.queue.prefix, 'the retry learns where the message is').toBe(placed.queue.prefix);
          expect(await retry.isQueued(job.jobId, openid)).toBe(true);
        }
        expected.push(`${placed.queue.name} ${job.jobId}`);
      }
      expect(await jobsIn(after)).toEqual(expected.sort());
    });
  }

  it('during a change, two gateways of opposite settings taking the same message at once queue it once', async () => {
    const prefix = `{${randomBytes(4).toString('hex')}}`;
    const before = producer(prefix, 1, 3);
    const after = producer(prefix, 3, 1);
    const expected: string[] = [];
    for (let i = 0; i < 20; i++) {
      const openid = `o${i}${randomBytes(6).toString('hex')}`;
      const job = toInboundJob(message(openid), 'plain', Date.now());
      const placed = await Promise.all([before.place(job.jobId, job.payload), after.place(job.jobId, job.payload), before.place(job.jobId, job.payload)]);
      expect(placed.filter((p) => !p.held)).toHaveLength(1);
      const where = placed.find((p) => !p.held)!.queue;
      for (const p of placed) expect(p.queue.prefix).toBe(where.prefix);
      expected.push(`${where.name} ${job.jobId}`);
    }
    expect(await jobsIn(after)).toEqual(expected.sort());
  });

  it("a marker whose gateway then failed to add the message (its attempt got 503): the next attempt queues it where the marker says, on either setting", async () => {
    const prefix = `{${randomBytes(4).toString('hex')}}`;
    const before = producer(prefix, 1, 3);
    const after = producer(prefix, 3, 1);
    for (const next of [before, after]) {
      const openid = `o${randomBytes(6).toString('hex')}`;
      const job = toInboundJob(message(openid), 'plain', Date.now());
      const moved = after.layouts.current.shardFor(openid);
      const arbiter = before.layouts.current.queues[0]!;
      await conn.set(`${arbiter.jobPrefix}de:${job.jobId}`, `moved-to:${moved.name}`, 'PX', 60_000);
      expect(await next.place(job.jobId, job.payload)).toEqual({ held: false, queue: moved });
      expect(await conn.exists(`${moved.jobPrefix}${job.jobId}`, `${arbiter.jobPrefix}${job.jobId}`)).toBe(1);
      expect(await conn.exists(`${moved.jobPrefix}${job.jobId}`)).toBe(1);
    }
  });
});

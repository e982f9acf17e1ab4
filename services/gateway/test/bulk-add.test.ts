import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Unpackr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEDUP_TTL_MS, DEFAULT_JOB_OPTIONS, createQueueAdder, loadAddStandardJob, packRawStrings, type QueueAdder } from '@wxrelay/shared/queue';
import { startRedis, type TestRedis } from '@wxrelay/testkit';

/**
 * The batched add runs BullMQ's own add script; these tests hold a job it writes to one written by
 * `Queue.add` with the same options, field by field, on a real Redis, and let a real BullMQ Worker
 * consume it.
 */

const NAME = 'inbound';
const OPTS = { name: NAME, jobOptions: DEFAULT_JOB_OPTIONS, dedupTtlMs: DEDUP_TTL_MS };

let redis: TestRedis;
let client: Redis;
const queues: Queue[] = [];

function newQueue(): Queue {
  const queue = new Queue('wx-inbound', { connection: client, prefix: redis.uniquePrefix('bulk'), defaultJobOptions: DEFAULT_JOB_OPTIONS });
  queues.push(queue);
  return queue;
}

function fastAdder(queue: Queue): QueueAdder {
  const adder = createQueueAdder(queue, client, OPTS);
  if (adder.via !== 'script') throw new Error(`one-command path unavailable: ${adder.reason}`);
  return adder;
}

/** Everything Redis holds about one job, with the parts that differ by nature (times, stream ids) taken out. */
async function snapshot(queue: Queue, jobId: string): Promise<Record<string, unknown>> {
  const hash = await client.hgetall(queue.toKey(jobId));
  const { timestamp, opts, ...fields } = hash;
  const events = await client.xrange(queue.toKey('events'), '-', '+');
  const dedupTtl = await client.pttl(queue.toKey(`de:${jobId}`));
  return {
    fields,
    opts: JSON.parse(opts ?? 'null') as unknown,
    hasTimestamp: /^\d+$/.test(timestamp ?? ''),
    wait: await client.lrange(queue.toKey('wait'), 0, -1),
    events: events.map(([, kv]) => kv).filter((kv) => kv.includes(jobId)),
    dedupValue: await client.get(queue.toKey(`de:${jobId}`)),
    dedupTtlWithinWindow: dedupTtl > DEDUP_TTL_MS - 60_000 && dedupTtl <= DEDUP_TTL_MS,
    marker: await client.zrange(queue.toKey('marker'), '0', '-1'),
  };
}

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url, { maxRetriesPerRequest: null });
});

afterAll(async () => {
  for (const q of queues) await q.close();
  client.disconnect();
  await redis.close();
});

describe('the batched add (BullMQ add script, once per job, one command)', () => {
  it('finds the add script of the installed bullmq and the layout it encodes for', () => {
    // A bullmq upgrade that moves or changes the script fails here first (the gateway would fall
    // back to Queue.addBulk: correct, but slower).
    expect(loadAddStandardJob()).toHaveProperty('lua');
  });

  const data = { v: 1, dedupKey: 'm-1', mode: 'plain', receivedAt: 1_700_000_000_000, message: { kind: 'text', content: '你好 ]]> "quoted"' } };

  it('writes a job exactly as Queue.add does: hash, options, wait list, events, dedup key', async () => {
    const viaBullmq = newQueue();
    const viaBatch = newQueue();
    await viaBullmq.add(NAME, data, { jobId: 'm-1', deduplication: { id: 'm-1', ttl: DEDUP_TTL_MS } });
    await fastAdder(viaBatch).add([{ jobId: 'm-1', data }]);

    const expected = await snapshot(viaBullmq, 'm-1');
    expect(expected.fields).toMatchObject({ name: NAME, data: JSON.stringify(data), deid: 'm-1' });
    expect(await snapshot(viaBatch, 'm-1')).toEqual(expected);
    // And BullMQ reads it back as its own.
    const job = await viaBatch.getJob('m-1');
    expect(job?.data).toEqual(data);
    expect(job?.opts).toMatchObject({ attempts: DEFAULT_JOB_OPTIONS.attempts, backoff: DEFAULT_JOB_OPTIONS.backoff, jobId: 'm-1' });
  });

  it('falls back to Queue.addBulk, writing the same job, when the script is not the one encoded for', async () => {
    const viaBullmq = newQueue();
    const viaFallback = newQueue();
    const adder = createQueueAdder(viaFallback, client, OPTS, () => ({ unavailable: 'test: layout changed' }));
    expect(adder).toMatchObject({ via: 'addBulk', reason: 'test: layout changed' });
    await viaBullmq.add(NAME, data, { jobId: 'm-1', deduplication: { id: 'm-1', ttl: DEDUP_TTL_MS } });
    expect(await adder.add([{ jobId: 'm-1', data }])).toEqual([false]);
    expect(await snapshot(viaFallback, 'm-1')).toEqual(await snapshot(viaBullmq, 'm-1'));
    expect(await adder.add([{ jobId: 'm-1', data }, { jobId: 'm-2', data }])).toEqual([true, false]);
  });

  it('adds a whole batch in order, and a job already there (or deduplicated) is not added twice', async () => {
    const queue = newQueue();
    const adder = fastAdder(queue);
    const ids = Array.from({ length: 40 }, (_, i) => `job-${i}`);
    expect(await adder.add(ids.map((jobId, i) => ({ jobId, data: { i } })))).toEqual(ids.map(() => false));
    // LPUSH: the oldest job is at the right end, where workers take from.
    expect(await client.lrange(queue.toKey('wait'), 0, -1)).toEqual([...ids].reverse());

    // Each job says whether Redis already held it: job-3 is a re-delivery, job-40 new, and a job
    // twice in one batch is new the first time only.
    expect(await adder.add([{ jobId: 'job-3', data: { i: 'again' } }, { jobId: 'job-40', data: { i: 40 } }])).toEqual([true, false]);
    expect(await adder.add([{ jobId: 'job-41', data: {} }, { jobId: 'job-41', data: {} }])).toEqual([false, true]);
    await queue.remove('job-41');
    expect(await queue.getWaitingCount()).toBe(41);
    expect((await queue.getJob('job-3'))?.data).toEqual({ i: 3 });

    // The job gone (completed, then dropped by the worker's retention, which leaves the dedup key
    // to its TTL), a retry is still kept out.
    await client.lrem(queue.toKey('wait'), 0, 'job-5');
    await client.del(queue.toKey('job-5'));
    expect(await adder.add([{ jobId: 'job-5', data: { i: 'retry' } }])).toEqual([true]);
    expect(await queue.getJob('job-5')).toBeUndefined();
    expect(await queue.getWaitingCount()).toBe(40);
  });

  it('feeds a real Worker: data, attempts and backoff as the producer set them', async () => {
    const queue = newQueue();
    const seen: [string | undefined, number, unknown, number | undefined][] = [];
    let worker: Worker | undefined;
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const done = new Promise<void>((resolve) => {
      worker = new Worker(
        queue.name,
        (job) => {
          seen.push([job.id, job.attemptsMade, job.data, job.opts.attempts]);
          if (job.attemptsMade === 0) return Promise.reject(new Error('first attempt fails'));
          resolve();
          return Promise.resolve();
        },
        { connection, prefix: queue.opts.prefix! },
      );
    });
    await fastAdder(queue).add([{ jobId: 'w-1', data: { hello: 'worker' } }]);
    await done;
    await worker?.close();
    connection.disconnect();
    const { attempts } = DEFAULT_JOB_OPTIONS;
    expect(seen).toEqual([
      ['w-1', 0, { hello: 'worker' }, attempts],
      ['w-1', 1, { hello: 'worker' }, attempts],
    ]);
  });

  it('recovers when Redis forgot the script (SCRIPT FLUSH, a restart or a failover)', async () => {
    const queue = newQueue();
    const adder = fastAdder(queue);
    await adder.add([{ jobId: 'before', data: {} }]);
    await client.script('FLUSH');
    await adder.add([{ jobId: 'after', data: {} }]);
    expect(await queue.getWaitingCount()).toBe(2);
  });

  it('rejects when Redis cannot take the batch', async () => {
    const queue = newQueue();
    const adder = fastAdder(queue);
    // A key of the wrong type where the wait list should be: the script errors, nothing is claimed.
    await client.set(queue.toKey('wait'), 'not a list');
    await expect(adder.add([{ jobId: 'x', data: {} }])).rejects.toThrow(/WRONGTYPE/);
  });
});

describe('packRawStrings', () => {
  it('is a msgpack array 32 of str 32 values holding the exact bytes (what Lua cmsgpack reads)', () => {
    const binary = Buffer.from([0x00, 0xc4, 0xff, 0x80]);
    const text = 'añ]]>';
    const packed = packRawStrings([binary, text, Buffer.alloc(0)]);
    const u32 = (n: number): number[] => [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
    expect([...packed]).toEqual([
      0xdd, ...u32(3),
      0xdb, ...u32(4), ...binary,
      0xdb, ...u32(Buffer.byteLength(text)), ...Buffer.from(text),
      0xdb, ...u32(0),
    ]);
    // A standard decoder agrees where the bytes are text.
    expect(new Unpackr({ useRecords: false }).unpack(packRawStrings(['a', text]))).toEqual(['a', text]);
  });
});

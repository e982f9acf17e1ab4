import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, waitFor, type TestRedis } from '@wxrelay/testkit';
import { QUEUE_JOB_STATES, createQueueGaugeSource, queueGaugeDefinitions, queueSnapshots, type CountableQueue, type QueueSnapshot, type SettableGauge } from './backlog-gauges.js';

/** A gauge that keeps what `collect` set, by label set. */
function fakeGauge(): SettableGauge & { values: Map<string, number> } {
  const values = new Map<string, number>();
  return { values, set: (labels, value) => values.set(JSON.stringify(labels), value) };
}

describe('queue snapshots against a real BullMQ queue', () => {
  let redis: TestRedis;
  let connection: Redis;
  beforeAll(async () => {
    redis = await startRedis();
    connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    connection.disconnect();
    await redis.close();
  });

  function freshQueue(): Queue {
    const queue = new Queue('inbound', { connection, prefix: redis.uniquePrefix('gauges') });
    queue.on('error', () => undefined);
    return queue;
  }

  it('reads the oldest waiting job at the tail of the wait list (getWaiting(0, 0)), not the newest', async () => {
    const queue = freshQueue();
    const t0 = 1_700_000_000_000;
    for (const [i, ts] of [t0, t0 + 1_000, t0 + 2_000].entries()) await queue.add('inbound', { i }, { jobId: `j${i}`, timestamp: ts });
    // BullMQ LPUSHes: the first job added is at the tail. getWaiting reads from the tail (ascending).
    expect((await queue.getWaiting(0, 0)).map((j) => j.id)).toEqual(['j0']);
    expect((await queue.getWaiting(-1, -1)).map((j) => j.id)).toEqual(['j2']);
    expect(await connection.lindex(queue.toKey('wait'), -1)).toBe('j0');

    const snapshot = await queueSnapshots(queue, { now: () => t0 + 10_000 })();
    expect(snapshot).toEqual({
      queue: 'inbound',
      counts: { waiting: 3, active: 0, delayed: 0, failed: 0, completed: 0, prioritized: 0 },
      oldestWaitingSeconds: 10,
    });
    await queue.close();
  });

  it('moves with the queue: waiting, delayed and prioritized; completed and failed once processed; 0 waiting once drained', async () => {
    const queue = freshQueue();
    const t0 = Date.now();
    const read = queueSnapshots(queue, { now: () => t0 + 60_000 });
    expect(await read()).toMatchObject({ counts: { waiting: 0, failed: 0, completed: 0 }, oldestWaitingSeconds: 0 });

    for (let i = 0; i < 5; i++) await queue.add('inbound', { fail: i % 2 === 1 }, { jobId: `m${i}`, timestamp: t0 + i * 1_000 });
    await queue.add('inbound', {}, { jobId: 'later', delay: 3_600_000 });
    await queue.add('inbound', {}, { jobId: 'urgent', priority: 1, timestamp: t0 });
    expect(await read()).toEqual({
      queue: 'inbound',
      counts: { waiting: 5, active: 0, delayed: 1, failed: 0, completed: 0, prioritized: 1 },
      oldestWaitingSeconds: 60,
    });

    const worker = new Worker(
      'inbound',
      (job) => ((job.data as { fail?: boolean }).fail === true ? Promise.reject(new UnrecoverableError('fails on purpose')) : Promise.resolve('ok')),
      { connection: connection.duplicate(), prefix: queue.opts.prefix ?? '', concurrency: 1 },
    );
    worker.on('error', () => undefined);
    try {
      await waitFor(async () => (await read())?.counts.waiting === 0 && (await queue.getJobCounts('prioritized', 'active')).active === 0 && (await queue.getPrioritizedCount()) === 0, 15_000, 'the queue to drain');
      expect(await read()).toEqual({
        queue: 'inbound',
        counts: { waiting: 0, active: 0, delayed: 1, failed: 2, completed: 4, prioritized: 0 },
        oldestWaitingSeconds: 0,
      });
    } finally {
      await worker.close();
      await queue.close();
    }
  });
});

describe('queue snapshots when Redis fails or hangs', () => {
  const counts = Object.fromEntries(QUEUE_JOB_STATES.map((s) => [s, 1]));

  it('gives undefined (never a rejection) when Redis fails', async () => {
    const queue: CountableQueue = { name: 'inbound', getJobCounts: () => Promise.reject(new Error('Connection is closed.')), getWaiting: () => Promise.resolve([]) };
    await expect(queueSnapshots(queue)()).resolves.toBeUndefined();
  });

  it('gives up after the timeout, and does not send another read while one is pending', async () => {
    let calls = 0;
    let answer: ((value: Record<string, number>) => void) | undefined;
    const queue: CountableQueue = {
      name: 'inbound',
      getJobCounts: () => {
        calls += 1;
        // The first read hangs until the test answers it; later ones answer at once.
        return calls === 1 ? new Promise((resolve) => (answer = resolve)) : Promise.resolve(counts);
      },
      getWaiting: () => Promise.resolve([{ timestamp: 0 }]),
    };
    const read = queueSnapshots(queue, { timeoutMs: 20, now: () => 5_000 });
    await expect(read()).resolves.toBeUndefined();
    await expect(read()).resolves.toBeUndefined();
    expect(calls).toBe(1);
    // Redis answers at last: a scrape then gets that read's result, and the one after reads afresh.
    answer?.(counts);
    await expect(read()).resolves.toMatchObject({ counts: { waiting: 1 }, oldestWaitingSeconds: 5 });
    await expect(read()).resolves.toMatchObject({ counts: { failed: 1 } });
    expect(calls).toBe(2);
  });
});

describe('queue gauge definitions', () => {
  it('set one series per state and the oldest age; keep the last values when a read gives nothing', async () => {
    let next: QueueSnapshot | undefined = {
      queue: 'inbound',
      counts: { waiting: 3, active: 1, delayed: 0, failed: 2, completed: 7, prioritized: 0 },
      oldestWaitingSeconds: 12.5,
    };
    const [jobs, oldest] = queueGaugeDefinitions(() => Promise.resolve(next));
    expect([jobs.name, oldest.name]).toEqual(['wxrelay_queue_jobs', 'wxrelay_queue_oldest_waiting_seconds']);
    const jobsGauge = fakeGauge();
    const oldestGauge = fakeGauge();
    await jobs.collect.call(jobsGauge);
    await oldest.collect.call(oldestGauge);
    expect(jobsGauge.values.get(JSON.stringify({ queue: 'inbound', state: 'failed' }))).toBe(2);
    expect(jobsGauge.values.size).toBe(6);
    expect(oldestGauge.values.get(JSON.stringify({ queue: 'inbound' }))).toBe(12.5);

    next = undefined;
    await jobs.collect.call(jobsGauge);
    await oldest.collect.call(oldestGauge);
    expect(jobsGauge.values.get(JSON.stringify({ queue: 'inbound', state: 'completed' }))).toBe(7);
    expect(oldestGauge.values.get(JSON.stringify({ queue: 'inbound' }))).toBe(12.5);
  });

  it('a collector whose read throws does not throw', async () => {
    const [jobs] = queueGaugeDefinitions(() => Promise.reject(new Error('boom')));
    await expect(jobs.collect.call(fakeGauge())).resolves.toBeUndefined();
  });

  it('a source reads nothing until a queue is watched, every watched queue (the shards), and nothing once detached', async () => {
    const source = createQueueGaugeSource();
    expect(await source.read()).toEqual([]);
    const queue = (name: string, waiting: number): CountableQueue => ({ name, getJobCounts: () => Promise.resolve({ waiting }), getWaiting: () => Promise.resolve([{ timestamp: Date.now() }]) });
    const detach = source.watch(queue('q', 0));
    expect(await source.read()).toMatchObject([{ queue: 'q', counts: { waiting: 0 }, oldestWaitingSeconds: 0 }]);
    const detachOther = source.watch(queue('{wx-1of2-4}:q', 2));
    expect(await source.read()).toMatchObject([{ queue: 'q' }, { queue: '{wx-1of2-4}:q', counts: { waiting: 2 } }]);
    detach();
    detachOther();
    expect(await source.read()).toEqual([]);
  });

  it('set the series of every queue read; a queue that gave nothing keeps its last values', async () => {
    const counts = (waiting: number) => ({ waiting, active: 0, delayed: 0, failed: 0, completed: 0, prioritized: 0 });
    let next: (QueueSnapshot | undefined)[] = [
      { queue: 'a', counts: counts(1), oldestWaitingSeconds: 1 },
      { queue: 'b', counts: counts(2), oldestWaitingSeconds: 2 },
    ];
    const [jobs, oldest] = queueGaugeDefinitions(() => Promise.resolve(next));
    const jobsGauge = fakeGauge();
    const oldestGauge = fakeGauge();
    await jobs.collect.call(jobsGauge);
    await oldest.collect.call(oldestGauge);
    expect(jobsGauge.values.size).toBe(12);
    next = [{ queue: 'a', counts: counts(5), oldestWaitingSeconds: 5 }, undefined];
    await jobs.collect.call(jobsGauge);
    await oldest.collect.call(oldestGauge);
    expect(jobsGauge.values.get(JSON.stringify({ queue: 'a', state: 'waiting' }))).toBe(5);
    expect(jobsGauge.values.get(JSON.stringify({ queue: 'b', state: 'waiting' }))).toBe(2);
    expect(oldestGauge.values.get(JSON.stringify({ queue: 'b' }))).toBe(2);
  });
});

import { EventEmitter } from 'node:events';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, waitFor, type TestRedis } from '@wxrelay/testkit';
import { createCompletionRides } from './completion.js';

let redis: TestRedis;
let conn: Redis;

beforeAll(async () => {
  redis = await startRedis();
  conn = new Redis(redis.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  conn.disconnect();
  await redis.close();
});

describe('commands riding on BullMQ\'s completion', () => {
  it('a ride is sent on the worker\'s connection just before the completion, in order, without a wait of its own', async () => {
    const prefix = redis.uniquePrefix('ride');
    const queue = new Queue('q', { connection: conn, prefix });
    const rides = createCompletionRides();
    let missed = 0;
    const seen: { finishedBefore: number; state: string }[] = [];
    const worker = new Worker(
      'q',
      (job: Job) => {
        // Runs on the worker's connection as BullMQ sends the completion: before it (the job is
        // not finished yet), and the completion goes out before the ride's answer is read.
        rides.ride(job, async () => {
          const finishedBefore = await conn.hexists(queue.toKey(job.id!), 'finishedOn');
          seen.push({ finishedBefore, state: await queue.getJobState(job.id!) });
        });
        return Promise.resolve('done');
      },
      { connection: conn, prefix, autorun: false },
      rides.backendFactory,
    );
    rides.attach(worker, () => (missed += 1));
    void worker.run();
    try {
      const job = await queue.add('j', {});
      await waitFor(async () => (await queue.getJobState(job.id!)) === 'completed', 10_000, 'the job to complete');
      await waitFor(() => seen.length === 1, 5_000, 'the ride');
      expect(seen[0]).toEqual({ finishedBefore: 0, state: 'completed' });
      expect(missed).toBe(0);
    } finally {
      await worker.close();
      await queue.close();
    }
  });

  it('a ride the completion did not carry goes out when the worker says the job completed (and says so once)', () => {
    const rides = createCompletionRides();
    const worker = new EventEmitter();
    let missed = 0;
    rides.attach(worker, () => (missed += 1));
    const sent: string[] = [];
    const a = {};
    const b = {};
    rides.ride(a, () => Promise.resolve(sent.push('a')));
    rides.ride(b, () => Promise.resolve(sent.push('b')));
    worker.emit('completed', a);
    worker.emit('completed', a);
    worker.emit('completed', b);
    worker.emit('completed', {});
    expect(sent).toEqual(['a', 'b']);
    expect(missed).toBe(1);
  });
});

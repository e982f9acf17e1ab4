/**
 * The floor under our worker: a plain BullMQ Worker with the same connection options, concurrency
 * and retention as ours, whose processor does nothing. Scenario 10 drains the same kind of backlog
 * with it, so Redis's and the process's cost per job that is BullMQ's own can be told from ours.
 *
 * Env: REDIS_URL, QUEUE_PREFIX, QUEUE_NAME, CONCURRENCY, JOBS (prints `done` once that many completed).
 */
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { JOB_RETENTION } from '@wxrelay/shared';

const connection = new Redis(process.env.REDIS_URL ?? '', { maxRetriesPerRequest: null });
const jobs = Number(process.env.JOBS);
let completed = 0;
const worker = new Worker(process.env.QUEUE_NAME ?? '', () => Promise.resolve('ok'), {
  connection,
  prefix: process.env.QUEUE_PREFIX ?? '',
  concurrency: Number(process.env.CONCURRENCY),
  maxStalledCount: 2,
  ...JOB_RETENTION,
});
worker.on('completed', () => {
  completed += 1;
  if (completed === jobs) process.stdout.write('done\n');
});
await worker.waitUntilReady();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.close().then(() => process.exit(0));
});

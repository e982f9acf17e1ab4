import type { RedisClient } from '../redis-connection.js';
import { lockKey } from './bullmq.js';

/**
 * Writes a job's data only while the writer still holds the job's lock.
 *
 * Why: BullMQ's `job.updateData` writes whoever calls it. A worker whose lock lapsed (Redis was
 * away when the lock was due for renewal, or its event loop starved) keeps running its processor
 * while the stalled-job checker hands the job to another worker; both would then plan and send the
 * same answer, and neither would know (a duplicate no log explains). The worker saves its progress
 * before every send ("part i is starting"), so guarding that write with the lock means a worker
 * that lost its lock stops before its next send, and the worker that took over finds the last part
 * that may have gone out marked as starting: at worst a send *in doubt*, counted and logged.
 *
 * The lock is BullMQ's: `<job key>:lock` holds the token of the worker that has the job
 * (`extendLocks` and `moveToFinished` read and write it so; bullmq.ts checks their digests).
 */
const WRITE_IF_LOCKED = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2])
return 1`;

const COMMAND = 'wxrelayWriteJobDataIfLocked';

/** Writes `data` as the job's data when `token` still holds its lock; false when it does not. */
export type JobDataWriter = (jobId: string, token: string, data: unknown) => Promise<boolean>;

/** A {@link JobDataWriter} for the queue whose job keys start with `jobPrefix` (`<prefix>:<queue>:`). */
export function createJobDataWriter(redis: RedisClient, jobPrefix: string): JobDataWriter {
  redis.defineCommand(COMMAND, { numberOfKeys: 2, lua: WRITE_IF_LOCKED });
  const command = (redis as unknown as Record<string, (...args: string[]) => Promise<unknown>>)[COMMAND]!.bind(redis);
  return async (jobId, token, data) => Number(await command(jobPrefix + jobId, lockKey(jobPrefix, jobId), token, JSON.stringify(data))) === 1;
}

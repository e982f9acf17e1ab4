import type { Redis } from 'ioredis';
import { defineScript } from './redis-script.js';

/**
 * Per-user reply order across any number of worker processes.
 *
 * BullMQ OSS has no job groups, so order is kept beside the queue: every job that will reply
 * registers in the user's turn list, `wx:turns:<appId>:<openid>`, a sorted set of job ids scored
 * by the job's enqueue time (the gateway adds jobs in the order WeChat pushed them). A job may
 * reply only while it is the head; otherwise the processor moves it back to `delayed` (it does
 * not hold a concurrency slot while it waits) and tries again shortly. The head leaves when its
 * job completes or fails for good, so a job retrying with backoff keeps the later messages waiting
 * — order holds across retries and across a worker crash (the stalled job stays registered).
 *
 * Two gaps are closed in the same Lua script:
 * - a job popped from `wait` but not registered yet (its worker is a few ms slower): any
 *   unregistered *active* job of the same user that was enqueued earlier also blocks the caller;
 * - a head that will never leave (removed by hand, or failed by the stalled checker without our
 *   code running): a head whose job hash is gone or has `finishedOn` is dropped.
 */
export interface UserTurns {
  /** Registers `jobId` and says whether it is its turn now. */
  take(openid: string, jobId: string, enqueuedAt: number): Promise<boolean>;
  /** The job is done (or given up): the next one of the user may go. Returns the new head. */
  release(openid: string, jobId: string): Promise<string | undefined>;
}

export interface UserTurnsDeps {
  readonly redis: Redis;
  readonly appId: string;
  /** BullMQ's key of the queue's active list (`worker.keys.active`). */
  readonly activeKey: string;
  /** BullMQ's job hash key prefix: `worker.toKey('')`, i.e. `<prefix>:<queue>:`. */
  readonly jobKeyPrefix: string;
  /** A turn list outlives its last activity by this long (default 7 days). */
  readonly ttlMs?: number;
}

const TAKE = `
local turns, active = KEYS[1], KEYS[2]
local jobId, score, prefix, openid, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
redis.call('ZADD', turns, 'NX', score, jobId)
redis.call('PEXPIRE', turns, ttl)
while true do
  local head = redis.call('ZRANGE', turns, 0, 0)[1]
  if head == jobId then break end
  if head == nil then return 0 end
  local jobKey = prefix .. head
  if redis.call('EXISTS', jobKey) == 0 or redis.call('HEXISTS', jobKey, 'finishedOn') == 1 then
    redis.call('ZREM', turns, head)
  else
    return 0
  end
end
local needle = '"fromUserName":"' .. openid .. '"'
for _, id in ipairs(redis.call('LRANGE', active, 0, -1)) do
  if id ~= jobId and not redis.call('ZSCORE', turns, id) then
    local h = redis.call('HMGET', prefix .. id, 'timestamp', 'data')
    local ts = tonumber(h[1])
    if ts and (ts < score or (ts == score and id < jobId)) and h[2] and string.find(h[2], needle, 1, true) then
      return 0
    end
  end
end
return 1`;

const RELEASE = `
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, 0)[1]`;

export function createUserTurns(deps: UserTurnsDeps): UserTurns {
  const key = (openid: string) => `wx:turns:${deps.appId}:${openid}`;
  const ttl = deps.ttlMs ?? 7 * 24 * 3600_000;
  const take = defineScript(deps.redis, 'wxTurnTake', 2, TAKE);
  const release = defineScript(deps.redis, 'wxTurnRelease', 1, RELEASE);
  return {
    async take(openid, jobId, enqueuedAt) {
      const r = await take([key(openid), deps.activeKey], [jobId, enqueuedAt, deps.jobKeyPrefix, openid, ttl]);
      return r === 1;
    },
    async release(openid, jobId) {
      const head = await release([key(openid)], [jobId]);
      return typeof head === 'string' ? head : undefined;
    },
  };
}

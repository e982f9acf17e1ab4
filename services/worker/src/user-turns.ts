import type { Redis } from 'ioredis';
import { defineScript } from './redis-script.js';

/**
 * Per-user reply order across any number of worker processes.
 *
 * BullMQ OSS has no job groups, so order is kept beside the queue: every job registers in its
 * user's turn list, `wx:turns:<appId>:<openid>`, a sorted set of job ids scored by the job's
 * enqueue time (the gateway adds jobs in the order WeChat pushed them). A job may reply only
 * while it is the head; otherwise the processor moves it back to `delayed` (it does not hold a
 * concurrency slot while it waits) and tries again shortly. The head leaves when its job completes
 * or fails for good, so a job retrying with backoff keeps the later messages waiting — order holds
 * across retries and across a worker crash (the stalled job stays registered).
 *
 * Registration does not wait for a job's own worker. BullMQ writes an `added` entry to the queue's
 * event stream atomically with every add, in add order; every `take` and `release` first reads
 * the entries added since the last one read (a cursor, `wx:turns-cursor:<appId>:<queue key>`) and
 * registers each new job in its user's list. So by the time a job runs `take`, every job of its
 * user enqueued before it is registered — waiting, popped by a slow or dead worker, or retrying —
 * and `take` only compares heads: O(log n) per job, each job's payload read once in all.
 *
 * Two fallbacks stay in the same Lua script:
 * - the stream is capped (BullMQ's `maxLenEvents`): when entries after the cursor were trimmed
 *   (no worker read them for a long while) the jobs behind them are unknown, so until the queue's
 *   `wait` list has been seen empty every `take` also scans the active list, as before the cursor,
 *   registering any unregistered active job (O(active) per take, only in that state);
 * - a head that will never leave (removed by hand, or failed by the stalled checker without our
 *   code running): a head whose job hash is gone or has `finishedOn` is dropped.
 *
 * Answering together: the job holding the turn may answer the messages of the user's jobs
 * registered behind it (a backlog). It marks each of them, `wx:answered:<appId>:<jobId>` = its own
 * id (expiring with the turn lists), and each, once it holds its turn, finds its marker in the same
 * script that gave it the turn and completes without sending. The marker is read only by the
 * holder of the turn, never before the take: a check before it could see "no marker" and then get
 * the turn right after the absorber released it, having sent the answer already.
 */
export interface UserTurns {
  /** Registers `jobId` and says whether it is its turn now (`enter` without the followers). */
  take(openid: string, jobId: string, enqueuedAt: number): Promise<boolean>;
  /**
   * Registers `jobId` and, when it is its turn, says whether an earlier job already answered it
   * (see {@link UserTurns.markAnswered}) or else which jobs of the user wait behind it (up to
   * `followers`, with their payloads), in one round trip.
   */
  enter(openid: string, jobId: string, enqueuedAt: number, followers?: number): Promise<Turn>;
  /** The job is done (or given up, or needs no turn): the next one of the user may go. Returns the new head. */
  release(openid: string, jobId: string): Promise<string | undefined>;
  /**
   * `byJobId` answers `jobIds` together with its own message: each of them, once it holds its
   * turn, finds the marker and completes without sending. Idempotent; markers expire with the
   * turn lists.
   */
  markAnswered(byJobId: string, jobIds: readonly string[]): Promise<void>;
  /** Takes back the markers `byJobId` set (only its own): those jobs answer themselves. */
  clearAnswered(byJobId: string, jobIds: readonly string[]): Promise<void>;
}

/** A job of the user registered after the one holding the turn, not finished. */
export interface Follower {
  readonly jobId: string;
  /** Its payload as stored on the job (JSON-decoded; unchecked). */
  readonly data: unknown;
}

export type Turn =
  | { readonly kind: 'wait' }
  | { readonly kind: 'turn'; readonly followers: readonly Follower[] }
  /** The job holds its turn and an earlier job already answered its message. */
  | { readonly kind: 'answered'; readonly by: string };

export interface UserTurnsDeps {
  readonly redis: Redis;
  readonly appId: string;
  /** BullMQ's job hash key prefix: `worker.toKey('')`, i.e. `<prefix>:<queue>:`. */
  readonly jobKeyPrefix: string;
  /** BullMQ's keys of the queue's event stream, active and wait lists (`worker.toKey('events')`, …). */
  readonly eventsKey: string;
  readonly activeKey: string;
  readonly waitKey: string;
  /** A turn list (and the cursor) outlives its last activity by this long (default 7 days). */
  readonly ttlMs?: number;
}

/*
 * KEYS: 1 the caller's turn list, 2 events stream, 3 cursor hash, 4 active list, 5 wait list.
 * ARGV: 1 jobId, 2 score, 3 job key prefix, 4 turn list prefix, 5 ttl, 6 'take' | 'release',
 *       7 answered-marker key prefix, 8 how many followers to return (take).
 * Returns for 'release' the new head; for 'take' {0} (wait), {2, absorber} (answered) or
 * {1, follower id, follower data, …} (its turn).
 */
const TURNS = `
local turns, events, cursorKey, active, wait = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local jobId, score, prefix, turnsPrefix, ttl, op = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local markerPrefix, wantFollowers = ARGV[7], tonumber(ARGV[8] or '0')

-- The job's user, from its payload; nil when the job is gone, finished or not ours.
local function userOf(id)
  local h = redis.call('HMGET', prefix .. id, 'timestamp', 'data', 'finishedOn')
  if not h[1] or not h[2] or h[3] then return nil end
  local ok, data = pcall(cjson.decode, h[2])
  if not ok or type(data) ~= 'table' or type(data.message) ~= 'table' then return nil end
  local openid = data.message.fromUserName
  if type(openid) ~= 'string' or openid == '' then return nil end
  return openid, tonumber(h[1])
end

local function register(id)
  local openid, ts = userOf(id)
  if not openid then return nil end
  local key = turnsPrefix .. openid
  redis.call('ZADD', key, 'NX', ts, id)
  redis.call('PEXPIRE', key, ttl)
  return openid
end

-- Catch up with the event stream: register every job added since the cursor.
local cursor = redis.call('HGET', cursorKey, 'id')
local gap = redis.call('HGET', cursorKey, 'gap') == '1'
if not cursor then
  cursor = '0-0'
  -- First use: the jobs added before the stream's first entry are unknown unless none was trimmed.
  local ok, info = pcall(redis.call, 'XINFO', 'STREAM', events)
  if ok then
    local f = {}
    for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
    if f['entries-added'] == nil or f['entries-added'] ~= f['length'] then gap = true end
  end
elseif #redis.call('XRANGE', events, cursor, cursor) == 0 then
  -- The last entry read was trimmed: so may have been the ones after it.
  gap = true
end
while true do
  local entries = redis.call('XRANGE', events, '(' .. cursor, '+', 'COUNT', 500)
  for _, e in ipairs(entries) do
    local f = e[2]
    if f[2] == 'added' and f[3] == 'jobId' then register(f[4]) end
  end
  if #entries > 0 then cursor = entries[#entries][1] end
  if #entries < 500 then break end
end
redis.call('HSET', cursorKey, 'id', cursor, 'gap', gap and '1' or '0')
redis.call('PEXPIRE', cursorKey, ttl)

if op == 'release' then
  redis.call('ZREM', turns, jobId)
  return redis.call('ZRANGE', turns, 0, 0)[1]
end

redis.call('ZADD', turns, 'NX', score, jobId)
redis.call('PEXPIRE', turns, ttl)
if gap then
  -- Jobs whose 'added' entry was trimmed may be active without a turn: register them now.
  for _, id in ipairs(redis.call('LRANGE', active, 0, -1)) do
    if id ~= jobId then register(id) end
  end
  if redis.call('LLEN', wait) == 0 then redis.call('HSET', cursorKey, 'gap', '0') end
end
while true do
  local head = redis.call('ZRANGE', turns, 0, 0)[1]
  if head == jobId then break end
  if head == nil then return {0} end
  local jobKey = prefix .. head
  if redis.call('EXISTS', jobKey) == 0 or redis.call('HEXISTS', jobKey, 'finishedOn') == 1 then
    redis.call('ZREM', turns, head)
  else
    return {0}
  end
end
-- The job holds its turn: only now is an "answered" marker final (its absorber has released the
-- turn, so it sent, or failed after sending; one that failed before sending cleared its markers).
local by = redis.call('GET', markerPrefix .. jobId)
if by then return {2, by} end
local out = {1}
if wantFollowers > 0 then
  for _, id in ipairs(redis.call('ZRANGE', turns, 1, wantFollowers)) do
    local h = redis.call('HMGET', prefix .. id, 'data', 'finishedOn')
    if h[1] and not h[2] then
      out[#out + 1] = id
      out[#out + 1] = h[1]
    end
  end
end
return out`;

/* ARGV: 1 the absorber's job id, 2… the marker keys (compare-and-delete: only its own). */
const UNMARK = `
for i = 2, #ARGV do
  if redis.call('GET', ARGV[i]) == ARGV[1] then redis.call('DEL', ARGV[i]) end
end
return 0`;

export function createUserTurns(deps: UserTurnsDeps): UserTurns {
  const turnsPrefix = `wx:turns:${deps.appId}:`;
  const cursorKey = `wx:turns-cursor:${deps.appId}:${deps.jobKeyPrefix.replace(/:$/, '')}`;
  const ttl = deps.ttlMs ?? 7 * 24 * 3600_000;
  const markerPrefix = `wx:answered:${deps.appId}:`;
  const run = defineScript(deps.redis, 'wxTurns', 5, TURNS);
  const unmark = defineScript(deps.redis, 'wxTurnsUnmark', 0, UNMARK);
  const call = (openid: string, jobId: string, score: number, op: 'take' | 'release', followers = 0) =>
    run([turnsPrefix + openid, deps.eventsKey, cursorKey, deps.activeKey, deps.waitKey], [jobId, score, deps.jobKeyPrefix, turnsPrefix, ttl, op, markerPrefix, followers]);
  const enter = async (openid: string, jobId: string, enqueuedAt: number, followers = 0): Promise<Turn> => {
    const answer = (await call(openid, jobId, enqueuedAt, 'take', followers)) as (number | string)[];
    if (answer[0] === 2) return { kind: 'answered', by: String(answer[1]) };
    if (answer[0] !== 1) return { kind: 'wait' };
    const list: Follower[] = [];
    for (let i = 1; i + 1 < answer.length; i += 2) {
      let data: unknown;
      try {
        data = JSON.parse(String(answer[i + 1]));
      } catch {
        data = undefined;
      }
      list.push({ jobId: String(answer[i]), data });
    }
    return { kind: 'turn', followers: list };
  };
  return {
    enter,
    async take(openid, jobId, enqueuedAt) {
      return (await enter(openid, jobId, enqueuedAt)).kind !== 'wait';
    },
    async release(openid, jobId) {
      const head = await call(openid, jobId, 0, 'release');
      return typeof head === 'string' ? head : undefined;
    },
    async markAnswered(byJobId, jobIds) {
      if (jobIds.length === 0) return;
      const multi = deps.redis.multi();
      for (const id of jobIds) multi.set(markerPrefix + id, byJobId, 'PX', ttl);
      await multi.exec();
    },
    async clearAnswered(byJobId, jobIds) {
      if (jobIds.length === 0) return;
      await unmark([], [byJobId, ...jobIds.map((id) => markerPrefix + id)]);
    },
  };
}

import type { RedisClient } from '../redis-connection.js';
import { hashTagOf } from '../config.js';
import { assertBullmqForTurns, queueKeysAt } from './bullmq.js';

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
 * - the stream is capped (BullMQ's `maxLenEvents`, `INBOUND_EVENTS_MAX_LEN` in contract.ts, which the
 *   producer sets and restores): when entries after the cursor were trimmed
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
 *
 * This module is the part of it that reads BullMQ's structures (the event stream's `added`
 * entries, job hashes, the `wait` and `active` lists: queue/bullmq.ts lists them and checks them
 * at startup) together with the turn lists, in one Lua script; the worker's `user-turns.ts` builds
 * the turn logic on {@link createTurnsScripts}.
 */

/*
 * The turn logic as Lua functions, shared by the turns script below and the per-job scripts that
 * fuse a turn step with the step before or after it (queue/job-scripts.ts).
 *
 * turnsCatchUp(events, cursorKey, prefix, turnsPrefix, ttl) registers every job added since the
 * cursor and returns whether jobs may be unregistered (the gap); turnsTake(turns, active, wait,
 * cursorKey, gap, jobId, score, prefix, turnsPrefix, ttl, markerPrefix, wantFollowers) returns {0}
 * (wait), {2, absorber} (answered) or {1, follower id, follower data, …} (its turn);
 * turnsRelease(turns, jobId) returns the new head.
 */
/** The gap's seen set is the cursor key with this suffix (same slot: the cursor carries the queue's tag). */
const GAP_SEEN_SUFFIX = ':gap-seen';

export const TURNS_FUNCTIONS_LUA = `
-- BullMQ's job hash: 'timestamp' and 'data' (addStandardJob), 'finishedOn' (moveToFinished).
-- The job's user, from its payload; nil when the job is gone, finished or not ours.
local function turnsUserOf(prefix, id)
  local h = redis.call('HMGET', prefix .. id, 'timestamp', 'data', 'finishedOn')
  if not h[1] or not h[2] or h[3] then return nil end
  local ok, data = pcall(cjson.decode, h[2])
  if not ok or type(data) ~= 'table' or type(data.message) ~= 'table' then return nil end
  local openid = data.message.fromUserName
  if type(openid) ~= 'string' or openid == '' then return nil end
  return openid, tonumber(h[1])
end

local function turnsRegister(prefix, turnsPrefix, ttl, id)
  local openid, ts = turnsUserOf(prefix, id)
  if not openid then return nil end
  local key = turnsPrefix .. openid
  redis.call('ZADD', key, 'NX', ts, id)
  redis.call('PEXPIRE', key, ttl)
  return openid
end

-- Catch up with the event stream: register every job added since the cursor.
local function turnsCatchUp(events, cursorKey, prefix, turnsPrefix, ttl)
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
      -- BullMQ's 'added' entry (addStandardJob): event, 'added', jobId, <id>, name, <name>.
      if f[2] == 'added' and f[3] == 'jobId' then turnsRegister(prefix, turnsPrefix, ttl, f[4]) end
    end
    if #entries > 0 then cursor = entries[#entries][1] end
    if #entries < 500 then break end
  end
  redis.call('HSET', cursorKey, 'id', cursor, 'gap', gap and '1' or '0')
  redis.call('PEXPIRE', cursorKey, ttl)
  return gap
end

local function turnsRelease(turns, jobId)
  redis.call('ZREM', turns, jobId)
  return redis.call('ZRANGE', turns, 0, 0)[1]
end

local function turnsTake(turns, active, wait, cursorKey, gap, jobId, score, prefix, turnsPrefix, ttl, markerPrefix, wantFollowers)
  redis.call('ZADD', turns, 'NX', score, jobId)
  redis.call('PEXPIRE', turns, ttl)
  if gap then
    -- Jobs whose 'added' entry was trimmed may be active without a turn: register them now. Each
    -- active job once per gap (the set of those seen; a registered job keeps its place until it
    -- releases it), so a take costs two list reads here, not a payload read per active job: a
    -- backlog larger than the stream's cap drains at the speed of one that is not.
    local seenKey = cursorKey .. '${GAP_SEEN_SUFFIX}'
    local ids = redis.call('LRANGE', active, 0, -1)
    for from = 1, #ids, 1000 do
      local chunk = {unpack(ids, from, math.min(from + 999, #ids))}
      local seen = redis.call('SMISMEMBER', seenKey, unpack(chunk))
      local fresh = {}
      for i, id in ipairs(chunk) do
        if seen[i] == 0 then
          if id ~= jobId then turnsRegister(prefix, turnsPrefix, ttl, id) end
          fresh[#fresh + 1] = id
        end
      end
      if #fresh > 0 then redis.call('SADD', seenKey, unpack(fresh)) end
    end
    redis.call('PEXPIRE', seenKey, ttl)
    if redis.call('LLEN', wait) == 0 then
      redis.call('HSET', cursorKey, 'gap', '0')
      redis.call('DEL', seenKey)
    end
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
  return out
end
`;

/*
 * KEYS: 1 the caller's turn list, 2 events stream, 3 cursor hash, 4 active list, 5 wait list.
 * ARGV: 1 jobId, 2 score, 3 job key prefix, 4 turn list prefix, 5 ttl, 6 'take' | 'release',
 *       7 answered-marker key prefix, 8 how many followers to return (take).
 * Returns for 'release' the new head; for 'take' {0} (wait), {2, absorber} (answered) or
 * {1, follower id, follower data, …} (its turn).
 */
const TURNS_LUA = `${TURNS_FUNCTIONS_LUA}
local turns, events, cursorKey, active, wait = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local jobId, score, prefix, turnsPrefix, ttl, op = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local markerPrefix, wantFollowers = ARGV[7], tonumber(ARGV[8] or '0')
local gap = turnsCatchUp(events, cursorKey, prefix, turnsPrefix, ttl)
if op == 'release' then return turnsRelease(turns, jobId) end
return turnsTake(turns, active, wait, cursorKey, gap, jobId, score, prefix, turnsPrefix, ttl, markerPrefix, wantFollowers)`;

/* KEYS: the marker keys (declared: Redis Cluster routes and checks by them). ARGV: 1 the absorber's job id (compare-and-delete: only its own). */
const UNMARK_LUA = `
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0`;

/** The keys the turns script reads and writes, derived from the app and BullMQ's queue keys. */
export interface TurnKeys {
  /** `<prefix>:<queue>:`: a job's hash is this followed by its id (BullMQ's). */
  readonly jobPrefix: string;
  /** BullMQ's event stream, active and wait lists of the queue. */
  readonly events: string;
  readonly active: string;
  readonly wait: string;
  /** `wx:turns:<appId>:` (`wx:turns:{<tag>}:<appId>:` under a tagged prefix): a user's turn list is this followed by their openid. */
  readonly turnsPrefix: string;
  /** `wx:turns-cursor:<appId>:<prefix>:<queue>`: how far the event stream has been read. */
  readonly cursorKey: string;
  /** The cursor key + `:gap-seen` (the scripts derive it so): the active jobs already registered while the stream has a gap. */
  readonly gapSeenKey: string;
  /** `wx:answered:<appId>:` (tagged as the turn lists): a job's "answered by" marker is this followed by its id. */
  readonly markerPrefix: string;
}

/**
 * The turn keys for `appId` on the queue whose job key prefix is `jobKeyPrefix` (`worker.toKey('')`).
 *
 * Redis Cluster: one call of the turns script touches the caller's turn list, other users' lists
 * (registering the jobs it reads from the event stream), the answered markers, the cursor and
 * BullMQ's keys (event stream, lists, job hashes), and the unmark script and the markers' MULTI
 * touch several markers: all of them must hash to one slot. A queue prefix with a hash tag
 * (`{wx}`: BullMQ's documented way) puts BullMQ's keys in its slot; the turn lists and markers then
 * carry the same tag (`wx:turns:{wx}:<appId>:<openid>`), and the cursor holds the prefix itself.
 * Without a tag the names stay as they always were (one Redis: no slots).
 */
export function turnKeys(appId: string, jobKeyPrefix: string): TurnKeys {
  const queue = queueKeysAt(jobKeyPrefix);
  const scope = keyScope(appId, jobKeyPrefix);
  const cursorKey = `wx:turns-cursor:${appId}:${jobKeyPrefix.replace(/:$/, '')}`;
  return {
    jobPrefix: queue.jobPrefix,
    events: queue.key('events'),
    active: queue.key('active'),
    wait: queue.key('wait'),
    turnsPrefix: `wx:turns:${scope}:`,
    cursorKey,
    gapSeenKey: cursorKey + GAP_SEEN_SUFFIX,
    markerPrefix: `wx:answered:${scope}:`,
  };
}

/**
 * The scope of the worker's per-user keys beside the queue whose job key prefix is `jobKeyPrefix`:
 * `<appId>`, or `{<tag>}:<appId>` when the prefix carries a hash tag, so those keys live in the
 * queue's slot (turn lists, answered markers, the quota ledger: the per-job scripts touch them
 * together with BullMQ's keys).
 */
export function keyScope(appId: string, jobKeyPrefix: string): string {
  const tag = hashTagOf(jobKeyPrefix);
  return tag === undefined ? appId : `{${tag}}:${appId}`;
}

/** A 'take' answer: {0} wait, {2, absorber} answered, {1, follower id, follower data, …} its turn. */
export type TakeAnswer = (number | string)[];

/** The turns scripts bound to one connection. */
export interface TurnsScripts {
  readonly keys: TurnKeys;
  /** A turn list (and the cursor, and the markers) outlives its last activity by this long. */
  readonly ttlMs: number;
  /** Registers `jobId` (score: its enqueue time) in `openid`'s list; its turn now or not (with up to `followers`). */
  take(openid: string, jobId: string, score: number, followers: number): Promise<TakeAnswer>;
  /** Removes `jobId` from `openid`'s list; the new head. */
  release(openid: string, jobId: string): Promise<unknown>;
  /** Deletes the markers of `jobIds` that `byJobId` set (compare-and-delete). */
  unmark(byJobId: string, jobIds: readonly string[]): Promise<unknown>;
}

type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;

/** `numberOfKeys` undefined: each call passes the key count first (a variable number of keys). */
export function define(redis: RedisClient, name: string, numberOfKeys: number | undefined, lua: string): ScriptCommand {
  redis.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
  const command = (redis as unknown as Record<string, ScriptCommand | undefined>)[name];
  if (command === undefined) throw new Error(`ioredis did not define the script command ${name}`);
  return command.bind(redis);
}

/** Default life of a turn list after its last activity: 7 days. */
export const TURNS_TTL_MS = 7 * 24 * 3600_000;

/**
 * Defines the turns scripts on `redis` (once per connection, at wiring time), after the startup
 * check of BullMQ's internals: throws, so the worker does not start, when the installed bullmq is
 * not one this script was written against (see queue/bullmq.ts).
 */
export function createTurnsScripts(redis: RedisClient, keys: TurnKeys, ttlMs: number = TURNS_TTL_MS): TurnsScripts {
  assertBullmqForTurns();
  const run = define(redis, 'wxTurns', 5, TURNS_LUA);
  const unmark = define(redis, 'wxTurnsUnmark', undefined, UNMARK_LUA);
  const call = (openid: string, jobId: string, score: number, op: 'take' | 'release', followers: number): Promise<unknown> =>
    run(keys.turnsPrefix + openid, keys.events, keys.cursorKey, keys.active, keys.wait, jobId, score, keys.jobPrefix, keys.turnsPrefix, ttlMs, op, keys.markerPrefix, followers);
  return {
    keys,
    ttlMs,
    take: async (openid, jobId, score, followers) => (await call(openid, jobId, score, 'take', followers)) as TakeAnswer,
    release: (openid, jobId) => call(openid, jobId, 0, 'release', 0),
    unmark: (byJobId, jobIds) => unmark(jobIds.length, ...jobIds.map((id) => keys.markerPrefix + id), byJobId),
  };
}

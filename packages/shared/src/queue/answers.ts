import type { Cluster, Redis } from 'ioredis';

/**
 * Passive answers: the answer to a message that goes back in WeChat's HTTP request rather than by
 * the customer-service API (`REPLY_MODE=passive|auto`, README "Accounts without the
 * customer-service API"). The worker records each message's answer once; whichever gateway holds
 * one of WeChat's attempts of that message claims it; what no attempt could carry waits in the
 * user's pending-answer inbox for their next message.
 *
 * Keys, beside the queue (`<base>` = `<prefix>:<queue>`, so a hash tag in the prefix puts them in
 * the queue's slot):
 * - `<base>:answer:<jobId>`, a hash per message: `count` and `p0…p{count-1}` (the pages, each a
 *   JSON {@link PassiveReply}), `owner` (who delivers it: `1`/`2`/`3` = that passive attempt,
 *   `inbox`, `cs` = the customer-service API), `retries` (WeChat's retries seen, so the latest
 *   attempt is known), `next` (the next page the inbox gives out), `from` (`inbox` or
 *   `placeholder` when the answer is not the handlers' own).
 * - `<base>:inbox:<openid>`, a list of job ids whose answers (from page `next`) wait for the user.
 * - `<base>:inbox-due`, a sorted set of `<inbox key>\n<jobId>` by expiry: the inbox's size, and
 *   what the sweep expires.
 * - `<base>:answers`, the pub/sub channel on which a recorded answer's job id is published: the
 *   gateways hold one subscription each, whatever the number of requests they hold.
 *
 * The claim is the exactly-once point: `owner` is set once, atomically with reading the pages, by
 * the one party that then delivers (a gateway writing the HTTP answer, or the worker sending by
 * the API, or the inbox). Every script touches one answer, one inbox and the due set of one base.
 */

/** A claimed answer's owner: the passive attempt that carries it, the inbox, or the customer-service API. */
export type AnswerOwner = '1' | '2' | '3' | 'inbox' | 'cs';

/** Where an answer came from, when it is not the handlers' own answer to that message. */
export type AnswerSource = '' | 'inbox' | 'placeholder';

export interface AnswerKeys {
  readonly answerPrefix: string;
  readonly inboxPrefix: string;
  readonly due: string;
  readonly channel: string;
}

/** The answer keys of the queue whose job key prefix is `jobKeyPrefix` (`<prefix>:<queue>:`). */
export function answerKeys(jobKeyPrefix: string): AnswerKeys {
  const base = jobKeyPrefix.replace(/:$/, '');
  return { answerPrefix: `${base}:answer:`, inboxPrefix: `${base}:inbox:`, due: `${base}:inbox-due`, channel: `${base}:answers` };
}

/** How long answer bookkeeping lives. */
export interface AnswerTimes {
  /** An answer no attempt claimed and no inbox holds (default 10 min: WeChat's retries are long over). */
  readonly answerTtlMs: number;
  /** How long an answer waits in the inbox (INBOX_TTL_SECONDS). */
  readonly inboxTtlMs: number;
}

export const DEFAULT_ANSWER_TTL_MS = 10 * 60_000;

/*
 * RECORD (worker). KEYS: 1 answer. ARGV: 1 channel, 2 jobId, 3 ttl, 4 inbox ttl, 5 source,
 * 6 count (-1: the customer-service API claims it), 7.. the pages.
 * Returns 'recorded' (published), 'kept' (recorded before: a retried job), or 'cs' (the API delivers:
 * the gateway stopped holding, or the caller claimed it for the API).
 */
const RECORD_LUA = `
local A = KEYS[1]
local channel, jobId, ttl, inboxTtl, source, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local owner = redis.call('HGET', A, 'owner')
if count < 0 then
  if owner and owner ~= 'cs' then return owner end
  redis.call('HSET', A, 'owner', 'cs')
  redis.call('PEXPIRE', A, ttl)
  return 'cs'
end
if redis.call('HEXISTS', A, 'count') == 1 then return 'kept' end
if owner == 'cs' then return 'cs' end
redis.call('HSET', A, 'count', count)
for i = 1, count do redis.call('HSET', A, 'p' .. (i - 1), ARGV[6 + i]) end
if source ~= '' then redis.call('HSET', A, 'from', source) end
if owner == 'inbox' then redis.call('PEXPIRE', A, tonumber(inboxTtl) + 60000) else redis.call('PEXPIRE', A, ttl) end
redis.call('PUBLISH', channel, jobId)
return 'recorded'`;

/*
 * CLAIM (gateway). KEYS: 1 answer, 2 the user's inbox, 3 due set. ARGV: 1 op ('take' | 'close' |
 * 'last'), 2 attempt (0: a retry arriving, numbered here), 3 now, 4 ttl, 5 inbox ttl, 6 jobId.
 * Returns {what, attempt, …}: {'answer', n, page or '', source, count}, {'pending', n},
 * {'closed', n} (auto: the API delivers), {'inbox', n} (the answer will wait in the inbox),
 * {'owned', n, owner} (claimed before), {'stale', n} (a later attempt of WeChat's holds it).
 */
const CLAIM_LUA = `
local A, I, D = KEYS[1], KEYS[2], KEYS[3]
local op, n, now, ttl, inboxTtl, jobId = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), ARGV[6]
if n == 0 then
  n = redis.call('HINCRBY', A, 'retries', 1) + 1
  if redis.call('PTTL', A) < 0 then redis.call('PEXPIRE', A, ttl) end
else
  local latest = tonumber(redis.call('HGET', A, 'retries') or '0') + 1
  if n < latest then return {'stale', n} end
end
local h = redis.call('HMGET', A, 'owner', 'count', 'from')
if h[1] then return {'owned', n, h[1]} end
local function toInbox(nextPage)
  redis.call('HSET', A, 'next', nextPage)
  redis.call('RPUSH', I, jobId)
  redis.call('PEXPIRE', I, inboxTtl + 60000)
  redis.call('ZADD', D, now + inboxTtl, I .. '\\n' .. jobId)
  redis.call('PEXPIRE', A, inboxTtl + 60000)
end
if h[2] then
  local count = tonumber(h[2])
  redis.call('HSET', A, 'owner', tostring(n))
  if count > 1 then toInbox(1) end
  local page = ''
  if count > 0 then page = redis.call('HGET', A, 'p0') end
  return {'answer', n, page, h[3] or '', count}
end
if op == 'close' then
  redis.call('HSET', A, 'owner', 'cs')
  return {'closed', n}
end
if op == 'last' then
  redis.call('HSET', A, 'owner', 'inbox')
  toInbox(0)
  return {'inbox', n}
end
return {'pending', n}`;

/*
 * FETCH (worker, passive mode): the user's next message takes the oldest pending page as its own
 * answer. KEYS: 1 the user's inbox, 2 due set, 3 the new message's answer. ARGV: 1 answer key
 * prefix, 2 channel, 3 new jobId, 4 ttl, 5 placeholder page (given when the oldest answer is not
 * ready yet), 6 inbox ttl. Returns {'empty', expired}, {'fetched', expired, answers still waiting},
 * {'pending', expired} (the placeholder recorded), {'kept', 0} (fetched before: a retried job).
 * The worker's turn command (job-scripts.ts: wxJobStart) peeks at what makes it anything but
 * {'empty', 0} (the new message's answer has a `count`, or the inbox is not empty), so a message
 * runs it only then: keep the two in step.
 */
const FETCH_LUA = `
local I, D, N = KEYS[1], KEYS[2], KEYS[3]
local prefix, channel, jobId, ttl, placeholder, inboxTtl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
if redis.call('HEXISTS', N, 'count') == 1 then return {'kept', 0} end
local expired = 0
local function record(page, source)
  redis.call('HSET', N, 'count', 1, 'p0', page, 'from', source)
  -- This message may itself wait in the inbox already (its last attempt answered the placeholder).
  if redis.call('HGET', N, 'owner') == 'inbox' then redis.call('PEXPIRE', N, inboxTtl + 60000) else redis.call('PEXPIRE', N, ttl) end
  redis.call('PUBLISH', channel, jobId)
end
local function drop(head)
  redis.call('LPOP', I)
  return redis.call('ZREM', D, I .. '\\n' .. head)
end
while true do
  local head = redis.call('LINDEX', I, 0)
  if not head then return {'empty', expired} end
  local H = prefix .. head
  local h = redis.call('HMGET', H, 'count', 'next')
  if not h[1] then
    if redis.call('EXISTS', H) == 0 then
      expired = expired + drop(head)
    else
      record(placeholder, 'placeholder')
      return {'pending', expired}
    end
  else
    local count, nxt = tonumber(h[1]), tonumber(h[2] or '0')
    if nxt >= count then
      drop(head)
      redis.call('DEL', H)
    else
      local page = redis.call('HGET', H, 'p' .. nxt)
      nxt = nxt + 1
      if nxt >= count then
        drop(head)
        redis.call('DEL', H)
      else
        redis.call('HSET', H, 'next', nxt)
      end
      record(page, 'inbox')
      return {'fetched', expired, redis.call('LLEN', I)}
    end
  end
end`;

/*
 * SWEEP (worker): expires inbox answers past their time. KEYS: 1 due set. ARGV: 1 now, 2 answer
 * key prefix, 3 limit. Returns how many expired.
 */
const SWEEP_LUA = `
local D = KEYS[1]
local now, prefix, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', D, '-inf', now, 'LIMIT', 0, limit)
local n = 0
for _, member in ipairs(due) do
  local cut = string.find(member, '\\n', 1, true)
  if cut then
    local inbox, jobId = string.sub(member, 1, cut - 1), string.sub(member, cut + 1)
    redis.call('LREM', inbox, 1, jobId)
    redis.call('DEL', prefix .. jobId)
  end
  n = n + redis.call('ZREM', D, member)
end
return n`;

/** What a gateway's claim found. */
export type ClaimResult =
  /** The answer, now this attempt's to deliver: its first page (undefined: nothing to say, ack). */
  | { readonly kind: 'answer'; readonly attempt: number; readonly page: string | undefined; readonly source: AnswerSource; readonly pages: number }
  /** Not ready yet (nothing written). */
  | { readonly kind: 'pending'; readonly attempt: number }
  /** `close`: the gateway stops holding; the customer-service API will deliver it. */
  | { readonly kind: 'closed'; readonly attempt: number }
  /** `last`: the answer will wait in the user's inbox (the caller answers the placeholder). */
  | { readonly kind: 'inbox'; readonly attempt: number }
  /** Claimed before (by an earlier attempt, the inbox or the API). */
  | { readonly kind: 'owned'; readonly attempt: number; readonly owner: AnswerOwner }
  /** A later attempt of WeChat's holds this message: this one must not answer. */
  | { readonly kind: 'stale'; readonly attempt: number };

export type ClaimOp = 'take' | 'close' | 'last';

export type RecordResult = 'recorded' | 'kept' | 'cs' | Exclude<AnswerOwner, 'cs'>;

export type FetchResult =
  | { readonly kind: 'empty'; readonly expired: number }
  | { readonly kind: 'fetched'; readonly expired: number; readonly waiting: number }
  | { readonly kind: 'pending'; readonly expired: number }
  | { readonly kind: 'kept'; readonly expired: number };

/** The answer scripts bound to one connection. */
export interface AnswerStore {
  readonly keys: AnswerKeys;
  /**
   * Worker: records `jobId`'s answer (`pages`: JSON passive replies; `[]` = nothing to say) and
   * publishes it, or, with `pages` undefined, claims it for the customer-service API.
   */
  record(jobId: string, pages: readonly string[] | undefined, source?: AnswerSource): Promise<RecordResult>;
  /** Gateway: claims `jobId`'s answer for `attempt` (0: a retry arriving, numbered by Redis). */
  claim(op: ClaimOp, jobId: string, openid: string, attempt: number, now: number): Promise<ClaimResult>;
  /** Worker: the oldest pending page becomes `jobId`'s answer (or the placeholder, when not ready). */
  fetch(openid: string, jobId: string, placeholderPage: string): Promise<FetchResult>;
  /** Worker: expires inbox answers past their time (up to `limit`); how many. */
  sweep(now: number, limit?: number): Promise<number>;
  /** Answers waiting in inboxes. */
  pending(): Promise<number>;
}

type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;

function define(redis: Redis | Cluster, name: string, numberOfKeys: number, lua: string): ScriptCommand {
  const existing = (redis as unknown as Record<string, ScriptCommand | undefined>)[name];
  if (existing === undefined) redis.defineCommand(name, { numberOfKeys, lua });
  const command = (redis as unknown as Record<string, ScriptCommand | undefined>)[name];
  if (command === undefined) throw new Error(`ioredis did not define the script command ${name}`);
  return command.bind(redis);
}

const asString = (v: unknown): string => (typeof v === 'string' ? v : v instanceof Buffer ? v.toString() : String(v));

/** Defines the answer scripts on `redis` (once per connection, at wiring time). */
export function createAnswerStore(redis: Redis | Cluster, keys: AnswerKeys, times: AnswerTimes): AnswerStore {
  const recordCmd = define(redis, 'wxAnswerRecord', 1, RECORD_LUA);
  const claimCmd = define(redis, 'wxAnswerClaim', 3, CLAIM_LUA);
  const fetchCmd = define(redis, 'wxAnswerFetch', 3, FETCH_LUA);
  const sweepCmd = define(redis, 'wxAnswerSweep', 1, SWEEP_LUA);
  const answerKey = (jobId: string): string => keys.answerPrefix + jobId;
  const inboxKey = (openid: string): string => keys.inboxPrefix + openid;
  return {
    keys,
    async record(jobId, pages, source = '') {
      const args = pages === undefined ? [-1] : [pages.length, ...pages];
      return asString(await recordCmd(answerKey(jobId), keys.channel, jobId, times.answerTtlMs, times.inboxTtlMs, source, ...args)) as RecordResult;
    },
    async claim(op, jobId, openid, attempt, now) {
      const r = (await claimCmd(answerKey(jobId), inboxKey(openid), keys.due, op, attempt, now, times.answerTtlMs, times.inboxTtlMs, jobId)) as unknown[];
      const kind = asString(r[0]);
      const n = Number(r[1]);
      switch (kind) {
        case 'answer': {
          const page = asString(r[2]);
          return { kind, attempt: n, page: page === '' ? undefined : page, source: asString(r[3]) as AnswerSource, pages: Number(r[4]) };
        }
        case 'owned':
          return { kind, attempt: n, owner: asString(r[2]) as AnswerOwner };
        case 'pending':
        case 'closed':
        case 'inbox':
        case 'stale':
          return { kind, attempt: n };
        default:
          throw new Error(`unexpected claim answer ${kind}`);
      }
    },
    async fetch(openid, jobId, placeholderPage) {
      const r = (await fetchCmd(inboxKey(openid), keys.due, answerKey(jobId), keys.answerPrefix, keys.channel, jobId, times.answerTtlMs, placeholderPage, times.inboxTtlMs)) as unknown[];
      const kind = asString(r[0]) as FetchResult['kind'];
      const expired = Number(r[1]);
      return kind === 'fetched' ? { kind, expired, waiting: Number(r[2]) } : { kind, expired };
    },
    async sweep(now, limit = 500) {
      return Number(await sweepCmd(keys.due, now, keys.answerPrefix, limit));
    },
    pending: () => redis.zcard(keys.due),
  };
}

import type { Redis } from 'ioredis';
import type { RedisClient } from '@wxrelay/shared/redis';
import type { InboundJobPayload } from '@wxrelay/shared';
import { defineScript } from '../redis-script.js';

type InboundMessage = InboundJobPayload['message'];

/**
 * The customer-service window of one user (docs/wechat-protocol.md §9.3): a user message allows 5
 * messages within 48 h; a follow, a QR scan or a click/scancode menu event allows 3 within 1 min.
 */
export const WINDOW_RULES = {
  message: { limit: 5, validityMs: 48 * 3600_000 },
  event: { limit: 3, validityMs: 60_000 },
} as const;
export type WindowTrigger = keyof typeof WINDOW_RULES;

/** Events that open a window (VIEW, LOCATION and the rest do not). */
const WINDOW_EVENTS: ReadonlySet<string> = new Set(['subscribe', 'SCAN', 'CLICK', 'scancode_push', 'scancode_waitmsg']);

/** Which kind of window `message` opens, if any. */
export function windowTrigger(message: InboundMessage): WindowTrigger | undefined {
  if (message.kind === 'event') return WINDOW_EVENTS.has(message.event) ? 'event' : undefined;
  return message.kind === 'unknown' ? undefined : 'message';
}

/**
 * When the user acted, in ms. `CreateTime` is WeChat's own clock but only to the second; it is
 * trusted when it is within 5 minutes of the gateway's `receivedAt` (and rounding it down only
 * makes the window end earlier: conservative). Otherwise the gateway's clock decides.
 */
export function triggerTime(payload: Pick<InboundJobPayload, 'receivedAt' | 'message'>): number {
  const created = payload.message.createTime * 1000;
  return Math.abs(created - payload.receivedAt) <= 5 * 60_000 ? Math.min(created, payload.receivedAt) : payload.receivedAt;
}

export interface QuotaLedger {
  /**
   * Records that the user opened a window at `at`. Idempotent per `triggerId`; an older trigger
   * than the one recorded changes nothing.
   */
  grant(openid: string, trigger: WindowTrigger, at: number, triggerId: string): Promise<void>;
  /**
   * Takes up to `want` messages of the user's quota for one reply, as of `now`; returns how many
   * were granted (0 when the window is closed or used up). `reservationId` names the reply so a
   * retried job re-reserving is harmless (the members are the same).
   */
  reserve(openid: string, want: number, reservationId: string, now: number): Promise<number>;
  /** WeChat said the window is closed or used up (45015 / 45047): believe it until the next trigger. */
  exhaust(openid: string): Promise<void>;
  /** The user's keys (the per-job scripts reserve and grant on them in the same command as their other steps). */
  keys(openid: string): LedgerKeys;
}

export interface QuotaLedgerDeps {
  readonly redis: RedisClient;
  readonly appId: string;
  /**
   * The queue prefix's hash tag (Redis Cluster): the user's two keys then carry it too
   * (`wx:cs-window:{<tag>}:<appId>:<openid>`), so they live in the queue's slot with the turn lists
   * and the job, and one script can reserve the quota and save the planned progress
   * (queue/job-scripts.ts in the shared package). Off: the keys keep their names of old.
   */
  readonly hashTag?: string;
}

/** The ledger's keys of one user: the window hash and the log of reserved sends (the queue's slot when tagged). */
export interface LedgerKeys {
  readonly window: string;
  readonly sends: string;
}

/** The ledger's keys of `openid`, under the queue's hash tag `hashTag` when there is one (see {@link QuotaLedgerDeps.hashTag}). */
export function ledgerKeys(appId: string, openid: string, hashTag?: string): LedgerKeys {
  const scope = hashTag === undefined ? appId : `{${hashTag}}:${appId}`;
  return { window: `wx:cs-window:${scope}:${openid}`, sends: `wx:cs-sends:${scope}:${openid}` };
}

/*
 * Why a log of sends and not a counter: a reset by message B must not forget the replies to an
 * earlier message A that were sent *after* B arrived, even when B's job records its grant later
 * than A's job sent them (jobs run concurrently and out of order). WeChat counts every message
 * sent after the latest trigger, so the ledger does the same: used = sends at or after triggerAt.
 *
 * The two steps as Lua functions, run by the ledger's own scripts below and inside the worker's
 * per-job scripts (which fuse the grant with the turn, and the reservation with the planned
 * progress: queue/job-scripts.ts in the shared package).
 */
export const LEDGER_LUA = `
local function ledgerGrant(window, at, limit, validityMs, triggerId)
  local triggerAt = tonumber(redis.call('HGET', window, 'triggerAt') or '-1')
  if at < triggerAt then return 0 end
  if at == triggerAt and redis.call('HGET', window, 'triggerId') == triggerId then return 0 end
  local untilMs = at + validityMs
  local prevUntil = tonumber(redis.call('HGET', window, 'until') or '0')
  if prevUntil > untilMs then untilMs = prevUntil end
  redis.call('HSET', window, 'triggerAt', at, 'limit', limit, 'until', untilMs, 'triggerId', triggerId)
  redis.call('PEXPIREAT', window, untilMs + 3600000)
  return 1
end

local function ledgerReserve(window, sends, want, now, reservationId)
  local h = redis.call('HMGET', window, 'triggerAt', 'limit', 'until')
  if not h[1] then return 0 end
  if now >= tonumber(h[3]) then return 0 end
  redis.call('ZREMRANGEBYSCORE', sends, '-inf', now - 49 * 3600000)
  local already = 0
  for i = 1, want do
    if redis.call('ZSCORE', sends, reservationId .. ':' .. i) then already = already + 1 end
  end
  if already > 0 then return already end
  local used = redis.call('ZCOUNT', sends, h[1], '+inf')
  local take = tonumber(h[2]) - used
  if take > want then take = want end
  if take <= 0 then return 0 end
  for i = 1, take do redis.call('ZADD', sends, now, reservationId .. ':' .. i) end
  redis.call('PEXPIREAT', sends, tonumber(h[3]) + 3600000)
  return take
end
`;

const GRANT = `${LEDGER_LUA}
return ledgerGrant(KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4])`;

const RESERVE = `${LEDGER_LUA}
return ledgerReserve(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])`;

/**
 * A per-user ledger of the customer-service quota in Redis, so the worker never sends more than
 * WeChat allows (each extra send would fail with 45047 anyway, after costing a call).
 *
 * Keys: `wx:cs-window:<appId>:<openid>` (hash: triggerAt, limit, until, triggerId) and
 * `wx:cs-sends:<appId>:<openid>` (sorted set of reserved messages by time); `{<tag>}:<appId>` in
 * both under a tagged queue prefix ({@link QuotaLedgerDeps.hashTag}, {@link ledgerKeys}).
 *
 * [uncertain, docs/wechat-protocol.md §9.3] A new trigger resets the count to its own limit and keeps the
 * longer of the two windows.
 */
export function createQuotaLedger(deps: QuotaLedgerDeps): QuotaLedger {
  const keys = (openid: string) => ledgerKeys(deps.appId, openid, deps.hashTag);
  const windowKey = (openid: string) => keys(openid).window;
  const sendsKey = (openid: string) => keys(openid).sends;
  const grant = defineScript(deps.redis, 'wxQuotaGrant', 1, GRANT);
  const reserve = defineScript(deps.redis, 'wxQuotaReserve', 2, RESERVE);
  return {
    keys,
    async grant(openid, trigger, at, triggerId) {
      const rule = WINDOW_RULES[trigger];
      await grant([windowKey(openid)], [at, rule.limit, rule.validityMs, triggerId]);
    },
    async reserve(openid, want, reservationId, now) {
      if (want <= 0) return 0;
      return Number(await reserve([windowKey(openid), sendsKey(openid)], [want, now, reservationId]));
    },
    async exhaust(openid) {
      await deps.redis.hset(windowKey(openid), 'limit', 0);
    },
  };
}

/**
 * The ledger while QUEUE_SHARDS changes (README: Changing QUEUE_SHARDS): one per user for both
 * layouts — the one beside the user's queue in the current layout (`current(openid)`) — so that
 * answers from the two layouts never spend the user's quota twice. The first time it touches a
 * user, it takes over what the other layout's ledger (`previous(openid)`) held, if its own holds
 * nothing yet: the window and the sends already reserved are not forgotten across the change.
 * Each call stays on one user's two keys of one ledger (one slot); the take-over is a copy, made
 * once per user and process, before the ledger's own call.
 */
export function createChangeLedger(redis: RedisClient, current: (openid: string) => QuotaLedger, previous: (openid: string) => QuotaLedger | undefined): QuotaLedger {
  const adopted = new Set<string>();
  const adopt = async (openid: string): Promise<QuotaLedger> => {
    const target = current(openid);
    if (adopted.has(openid)) return target;
    const source = previous(openid);
    const to = target.keys(openid);
    if (source !== undefined && source.keys(openid).window !== to.window && (await redis.exists(to.window)) === 0) {
      const from = source.keys(openid);
      const [window, sends, ttl] = await Promise.all([redis.hgetall(from.window), (redis as Redis).zrangebyscore(from.sends, '-inf', '+inf', 'WITHSCORES'), redis.pttl(from.window)]);
      if (Object.keys(window).length > 0) {
        if (sends.length > 0) await redis.zadd(to.sends, ...sends.flatMap((v, i) => (i % 2 === 0 ? [] : [sends[i]!, sends[i - 1]!])));
        await redis.hset(to.window, window);
        if (ttl > 0) {
          await redis.pexpire(to.window, ttl);
          await redis.pexpire(to.sends, ttl);
        }
      }
    }
    adopted.add(openid);
    return target;
  };
  return {
    keys: (openid) => current(openid).keys(openid),
    grant: async (openid, trigger, at, triggerId) => (await adopt(openid)).grant(openid, trigger, at, triggerId),
    reserve: async (openid, want, reservationId, now) => (await adopt(openid)).reserve(openid, want, reservationId, now),
    exhaust: async (openid) => (await adopt(openid)).exhaust(openid),
  };
}

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
}

export interface QuotaLedgerDeps {
  readonly redis: RedisClient;
  readonly appId: string;
  /**
   * Redis Cluster: give each user's two keys a hash tag of their own (`{<openid>}`), so the reserve
   * script (which touches both) runs in one slot while users spread over the cluster. The worker
   * sets it when the queue prefix carries a hash tag (the cluster key layout); off, the keys keep
   * their names of old.
   */
  readonly userHashTags?: boolean;
}

/** The ledger's keys of one user: the window hash and the log of reserved sends (one slot when tagged). */
export function ledgerKeys(appId: string, openid: string, userHashTags = false): { readonly window: string; readonly sends: string } {
  const user = userHashTags ? `{${openid}}` : openid;
  return { window: `wx:cs-window:${appId}:${user}`, sends: `wx:cs-sends:${appId}:${user}` };
}

/*
 * Why a log of sends and not a counter: a reset by message B must not forget the replies to an
 * earlier message A that were sent *after* B arrived, even when B's job records its grant later
 * than A's job sent them (jobs run concurrently and out of order). WeChat counts every message
 * sent after the latest trigger, so the ledger does the same: used = sends at or after triggerAt.
 */
const GRANT = `
local triggerAt = tonumber(redis.call('HGET', KEYS[1], 'triggerAt') or '-1')
local at = tonumber(ARGV[1])
if at < triggerAt then return 0 end
if at == triggerAt and redis.call('HGET', KEYS[1], 'triggerId') == ARGV[4] then return 0 end
local untilMs = at + tonumber(ARGV[3])
local prevUntil = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if prevUntil > untilMs then untilMs = prevUntil end
redis.call('HSET', KEYS[1], 'triggerAt', at, 'limit', ARGV[2], 'until', untilMs, 'triggerId', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], untilMs + 3600000)
return 1`;

const RESERVE = `
local h = redis.call('HMGET', KEYS[1], 'triggerAt', 'limit', 'until')
if not h[1] then return 0 end
local now = tonumber(ARGV[2])
if now >= tonumber(h[3]) then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 49 * 3600000)
local want = tonumber(ARGV[1])
local already = 0
for i = 1, want do
  if redis.call('ZSCORE', KEYS[2], ARGV[3] .. ':' .. i) then already = already + 1 end
end
if already > 0 then return already end
local used = redis.call('ZCOUNT', KEYS[2], h[1], '+inf')
local take = tonumber(h[2]) - used
if take > want then take = want end
if take <= 0 then return 0 end
for i = 1, take do redis.call('ZADD', KEYS[2], now, ARGV[3] .. ':' .. i) end
redis.call('PEXPIREAT', KEYS[2], tonumber(h[3]) + 3600000)
return take`;

/**
 * A per-user ledger of the customer-service quota in Redis, so the worker never sends more than
 * WeChat allows (each extra send would fail with 45047 anyway, after costing a call).
 *
 * Keys: `wx:cs-window:<appId>:<openid>` (hash: triggerAt, limit, until, triggerId) and
 * `wx:cs-sends:<appId>:<openid>` (sorted set of reserved messages by time); `{<openid>}` in both
 * with {@link QuotaLedgerDeps.userHashTags} ({@link ledgerKeys}).
 *
 * [uncertain, docs/wechat-protocol.md §9.3] A new trigger resets the count to its own limit and keeps the
 * longer of the two windows.
 */
export function createQuotaLedger(deps: QuotaLedgerDeps): QuotaLedger {
  const windowKey = (openid: string) => ledgerKeys(deps.appId, openid, deps.userHashTags).window;
  const sendsKey = (openid: string) => ledgerKeys(deps.appId, openid, deps.userHashTags).sends;
  const grant = defineScript(deps.redis, 'wxQuotaGrant', 1, GRANT);
  const reserve = defineScript(deps.redis, 'wxQuotaReserve', 2, RESERVE);
  return {
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

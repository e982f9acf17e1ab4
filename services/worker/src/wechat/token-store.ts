import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisClient } from '@wxrelay/shared/redis';
import { WxError, type Logger } from '@wxrelay/shared';
import type { FetchToken, IssuedToken } from './token-fetcher.js';

/** Why a token was fetched (a metrics label). */
export type RefreshCause = 'missing' | 'expiring' | 'invalidated';

/**
 * The access token of one appid, shared by every worker process through Redis
 * (docs/wechat-protocol.md §8: "use one central token service; independent refreshers overwrite each other").
 */
export interface TokenStore {
  /**
   * A token that is valid now, fetching one first when none is cached or it is about to expire.
   * Served from process memory until the token's refresh time; Redis is asked only then.
   */
  get(): Promise<string>;
  /**
   * The API rejected `token` (40001/40014/42001): expire it, but only if it is still the cached
   * one — another caller may already have replaced it, and deleting the new one would make every
   * process fetch again.
   */
  invalidate(token: string): Promise<void>;
}

export interface TokenStoreDeps {
  readonly redis: RedisClient;
  readonly appId: string;
  readonly fetchToken: FetchToken;
  readonly log: Logger;
  readonly now?: () => number;
  /** Refresh when less than this is left (default 60 s; at most half the lifetime). */
  readonly refreshMarginMs?: number;
  /** How long the cross-process lock lives if its holder dies; longer than one token fetch. */
  readonly lockTtlMs?: number;
  /** How long to wait for another process's refresh before giving up on this call. */
  readonly waitTimeoutMs?: number;
  readonly onRefresh?: (cause: RefreshCause) => void;
  /** A fetch of a new token failed (network, WeChat's errcode, a timeout). */
  readonly onRefreshFailure?: () => void;
}

interface CachedToken {
  readonly token: string;
  /** Unix ms after which the next `get` refreshes. */
  readonly refreshAt: number;
  /** Unix ms at which WeChat stops accepting it. */
  readonly expiresAt: number;
}

const COMPARE_AND_DELETE_FIELD = `
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;
const COMPARE_AND_DELETE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** The token cache and the cross-process refresh lock of `appId` (each script touches one of them). */
export function tokenKeys(appId: string): { readonly key: string; readonly lockKey: string } {
  return { key: `wx:token:${appId}`, lockKey: `wx:token-lock:${appId}` };
}

/**
 * Single-flight twice: one pending refresh per process (a shared promise), and a Redis lock
 * (`SET NX PX`) across processes. Whoever takes the lock reads the cache again before fetching,
 * so a process that waited behind another one's refresh uses that token instead of fetching its
 * own. Processes that do not get the lock poll the cache until the holder writes the new token.
 *
 * Redis: `wx:token:<appId>` (hash token/refreshAt/expiresAt, expiring with the token) and
 * `wx:token-lock:<appId>`. The token itself is never logged.
 */
export function createTokenStore(deps: TokenStoreDeps): TokenStore {
  const { redis, log } = deps;
  const now = deps.now ?? Date.now;
  const marginMs = deps.refreshMarginMs ?? 60_000;
  const lockTtlMs = deps.lockTtlMs ?? 15_000;
  const waitTimeoutMs = deps.waitTimeoutMs ?? 20_000;
  const { key, lockKey } = tokenKeys(deps.appId);
  let pending: Promise<string> | undefined;
  /**
   * This process's copy of the cached token, used without asking Redis until its `refreshAt`.
   * `generation` counts invalidations: a Redis read that started before one must not bring the
   * rejected token back into memory.
   */
  let local: CachedToken | undefined;
  let generation = 0;

  const read = async (): Promise<CachedToken | undefined> => {
    const readGeneration = generation;
    const h = await redis.hgetall(key);
    if (h.token === undefined || h.refreshAt === undefined || h.expiresAt === undefined) return undefined;
    const cached = { token: h.token, refreshAt: Number(h.refreshAt), expiresAt: Number(h.expiresAt) };
    if (cached.expiresAt <= now()) return undefined;
    if (readGeneration === generation) local = cached;
    return cached;
  };

  const fresh = (c: CachedToken | undefined): boolean => c !== undefined && now() < c.refreshAt;

  const fetchAndStore = async (cause: RefreshCause): Promise<string> => {
    deps.onRefresh?.(cause);
    let issued: IssuedToken;
    try {
      issued = await deps.fetchToken();
    } catch (err) {
      deps.onRefreshFailure?.();
      throw err;
    }
    const lifetimeMs = issued.expiresInSec * 1000;
    const t = now();
    const expiresAt = t + lifetimeMs;
    const refreshAt = expiresAt - Math.min(marginMs, lifetimeMs / 2);
    const fetchedGeneration = generation;
    await redis
      .multi()
      .hset(key, { token: issued.accessToken, refreshAt: String(refreshAt), expiresAt: String(expiresAt) })
      .pexpireat(key, expiresAt)
      .exec();
    if (fetchedGeneration === generation) local = { token: issued.accessToken, refreshAt, expiresAt };
    log.info({ cause, expiresInSec: issued.expiresInSec }, 'access token refreshed');
    return issued.accessToken;
  };

  const refreshAcrossProcesses = async (cause: RefreshCause): Promise<string> => {
    const deadline = now() + waitTimeoutMs;
    for (let round = 0; ; round++) {
      const owner = randomUUID();
      if ((await redis.set(lockKey, owner, 'PX', lockTtlMs, 'NX')) === 'OK') {
        try {
          const cached = await read();
          if (cached !== undefined && fresh(cached)) return cached.token;
          return await fetchAndStore(cached === undefined ? cause : 'expiring');
        } finally {
          await redis.eval(COMPARE_AND_DELETE, 1, lockKey, owner);
        }
      }
      await sleep(Math.min(25 * 2 ** round, 200));
      const cached = await read();
      if (cached !== undefined && fresh(cached)) return cached.token;
      if (now() > deadline) {
        throw new WxError('WX_ERR_NETWORK', `no access token within ${waitTimeoutMs} ms: another process holds the refresh lock`);
      }
    }
  };

  const refresh = (cause: RefreshCause): Promise<string> => {
    pending ??= refreshAcrossProcesses(cause).finally(() => {
      pending = undefined;
    });
    return pending;
  };

  return {
    async get() {
      if (local !== undefined && fresh(local)) return local.token;
      const cached = await read();
      if (cached === undefined) return refresh('missing');
      if (fresh(cached)) return cached.token;
      try {
        return await refresh('expiring');
      } catch (err) {
        // Still valid for a while: a failed early refresh must not fail the call.
        if (now() < cached.expiresAt - 5_000) {
          log.warn({ err }, 'access token refresh failed; using the current one until it expires');
          return cached.token;
        }
        throw err;
      }
    },
    async invalidate(token) {
      // Forget it here even when Redis already holds another token (another process refreshed):
      // the next `get` reads that one.
      if (local?.token === token) local = undefined;
      generation += 1;
      const deleted = await redis.eval(COMPARE_AND_DELETE_FIELD, 1, key, token);
      if (deleted !== 1) return;
      log.info('access token rejected by WeChat; expired the cached one');
      await refresh('invalidated');
    },
  };
}

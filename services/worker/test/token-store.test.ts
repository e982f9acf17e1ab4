import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '@wxrelay/testkit';
import { createTokenStore, type RefreshCause } from '../src/wechat/token-store.js';
import type { FetchToken } from '../src/wechat/token-fetcher.js';
import { captureLogger } from './support.js';

let redis: TestRedis;
const clients: Redis[] = [];

function client(): Redis {
  const c = new Redis(redis.url, { maxRetriesPerRequest: null });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

/** A token endpoint stand-in that counts calls and answers after `delayMs`. */
function countingFetch(delayMs = 30, expiresInSec = 7200) {
  let n = 0;
  const fetchToken: FetchToken = async () => {
    n += 1;
    const issued = n;
    await new Promise((r) => setTimeout(r, delayMs));
    return { accessToken: `TOKEN-${issued}`, expiresInSec };
  };
  return { fetchToken, count: () => n };
}

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await redis.close();
});

describe('createTokenStore', () => {
  it('fetches once for 100 concurrent callers spread over two "processes" (two clients, two stores)', async () => {
    const appId = redis.uniquePrefix('app');
    const endpoint = countingFetch(80);
    const causes: RefreshCause[] = [];
    const { log } = captureLogger('silent');
    const stores = [client(), client()].map((c) => createTokenStore({ redis: c, appId, fetchToken: endpoint.fetchToken, log, onRefresh: (c) => causes.push(c) }));
    const tokens = await Promise.all(Array.from({ length: 100 }, (_, i) => stores[i % 2]!.get()));
    expect(new Set(tokens)).toEqual(new Set(['TOKEN-1']));
    expect(endpoint.count()).toBe(1);
    expect(causes).toEqual(['missing']);
  });

  it('expires a rejected token only if it is still the cached one (compare-and-delete), then fetches once', async () => {
    const appId = redis.uniquePrefix('app');
    const endpoint = countingFetch(10);
    const { log } = captureLogger('silent');
    const causes: RefreshCause[] = [];
    const a = createTokenStore({ redis: client(), appId, fetchToken: endpoint.fetchToken, log, onRefresh: (c) => causes.push(c) });
    const b = createTokenStore({ redis: client(), appId, fetchToken: endpoint.fetchToken, log });
    expect(await a.get()).toBe('TOKEN-1');
    // Both processes saw TOKEN-1 fail; each expires it, only one fetch follows.
    await Promise.all([a.invalidate('TOKEN-1'), b.invalidate('TOKEN-1')]);
    expect(await b.get()).toBe('TOKEN-2');
    expect(endpoint.count()).toBe(2);
    // A late failure report of the old token must not delete the new one.
    await a.invalidate('TOKEN-1');
    expect(await a.get()).toBe('TOKEN-2');
    expect(endpoint.count()).toBe(2);
    expect(causes).toEqual(['missing', 'invalidated']);
  });

  it('refreshes before expiry, and keeps using a still-valid token when that early refresh fails', async () => {
    const appId = redis.uniquePrefix('app');
    let t = Date.now();
    let fail = false;
    let n = 0;
    const { log, lines } = captureLogger('warn');
    const store = createTokenStore({
      redis: client(),
      appId,
      log,
      now: () => t,
      refreshMarginMs: 60_000,
      fetchToken: () => {
        n += 1;
        if (fail) return Promise.reject(new Error('token endpoint down'));
        return Promise.resolve({ accessToken: `T${n}`, expiresInSec: 7200 });
      },
    });
    expect(await store.get()).toBe('T1');
    t += 7200_000 - 120_000;
    expect(await store.get()).toBe('T1');
    t += 90_000; // within the last minute: refresh
    expect(await store.get()).toBe('T2');
    t += 7200_000 - 30_000;
    fail = true;
    expect(await store.get()).toBe('T2');
    expect(lines().some((l) => l.msg === 'access token refresh failed; using the current one until it expires')).toBe(true);
  });

  it('waits for another process that holds the refresh lock instead of fetching itself', async () => {
    const appId = redis.uniquePrefix('app');
    const c = client();
    await c.set(`wx:token-lock:${appId}`, 'someone-else', 'PX', 5_000);
    const endpoint = countingFetch(0);
    const store = createTokenStore({ redis: c, appId, fetchToken: endpoint.fetchToken, log: captureLogger('silent').log });
    const got = store.get();
    await new Promise((r) => setTimeout(r, 100));
    await c.hset(`wx:token:${appId}`, { token: 'FROM-OTHER', refreshAt: String(Date.now() + 3_600_000), expiresAt: String(Date.now() + 7_200_000) });
    expect(await got).toBe('FROM-OTHER');
    expect(endpoint.count()).toBe(0);
  });

  it('serves the token from memory until its refresh time: one Redis read for 200 gets', async () => {
    const appId = redis.uniquePrefix('app');
    const c = client();
    const endpoint = countingFetch(0);
    const store = createTokenStore({ redis: c, appId, fetchToken: endpoint.fetchToken, log: captureLogger('silent').log });
    await c.hset(`wx:token:${appId}`, { token: 'FROM-REDIS', refreshAt: String(Date.now() + 3_600_000), expiresAt: String(Date.now() + 7_200_000) });
    const reads = async () => Number(/cmdstat_hgetall:calls=(\d+)/.exec(await c.info('commandstats'))?.[1] ?? 0);
    const before = await reads();
    for (let i = 0; i < 200; i++) expect(await store.get()).toBe('FROM-REDIS');
    expect((await reads()) - before).toBe(1);
    expect(endpoint.count()).toBe(0);
  });

  it('drops its copy of a rejected token even when another process already replaced it in Redis', async () => {
    const appId = redis.uniquePrefix('app');
    const endpoint = countingFetch(10);
    const { log } = captureLogger('silent');
    const a = createTokenStore({ redis: client(), appId, fetchToken: endpoint.fetchToken, log });
    const b = createTokenStore({ redis: client(), appId, fetchToken: endpoint.fetchToken, log });
    expect(await a.get()).toBe('TOKEN-1');
    expect(await b.get()).toBe('TOKEN-1');
    await b.invalidate('TOKEN-1'); // b saw a 40001 first and refreshed
    expect(await b.get()).toBe('TOKEN-2');
    await a.invalidate('TOKEN-1'); // a's send with its copy failed too: Redis already holds TOKEN-2
    expect(await a.get()).toBe('TOKEN-2');
    expect(endpoint.count()).toBe(2);
  });

  it('never writes the token to the log', async () => {
    const appId = redis.uniquePrefix('app');
    const cap = captureLogger('trace');
    const store = createTokenStore({ redis: client(), appId, fetchToken: () => Promise.resolve({ accessToken: 'SECRET-TOKEN-VALUE', expiresInSec: 7200 }), log: cap.log });
    await store.get();
    await store.invalidate('SECRET-TOKEN-VALUE');
    expect(cap.lines().length).toBeGreaterThan(0);
    expect(cap.text()).not.toContain('SECRET-TOKEN-VALUE');
  });
});

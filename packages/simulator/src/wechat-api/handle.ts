import type { FakeWechatApi, FakeWechatApiOptions } from '../wechat-api.js';
import { clearRecords, createEvents, createRecords, type Delivery, type FakeWechatContext } from './context.js';
import { createInjectionQueue } from './injections.js';
import { createTokenStore } from './token-store.js';
import { createWindowLedger } from './window-ledger.js';

/** A fresh fake's state, and the controller whose abort ends its injected delays (on close). */
export function createFakeWechatContext(
  options: Omit<FakeWechatApiOptions, 'port' | 'host'>,
): { context: FakeWechatContext; abort: AbortController } {
  const now = options.now ?? Date.now;
  const abort = new AbortController();
  const context: FakeWechatContext = {
    appId: options.appId,
    appSecret: options.appSecret,
    enforceWindow: options.enforceWindow ?? true,
    strictTyping: options.strictTyping ?? false,
    unverified: options.unverified ?? false,
    maxTextBytes: options.maxTextBytes ?? 2048,
    now,
    tokens: createTokenStore({ ttlSeconds: options.tokenTtlSeconds ?? 7200, now }),
    windows: createWindowLedger(),
    injections: createInjectionQueue(),
    records: createRecords(),
    events: createEvents(),
    typingUntil: new Map(),
    signal: abort.signal,
  };
  return { context, abort };
}

/**
 * The controls of a fake whose routes are served at `url` (by its own server or inside the
 * simulator's); `close` closes that server.
 */
export function fakeWechatHandle(context: FakeWechatContext, url: string, close: () => Promise<void>): FakeWechatApi {
  const { records, events, now } = context;

  function waitForDeliveries(count: number, timeoutMs = 5000): Promise<readonly Delivery[]> {
    if (records.deliveries.length >= count) return Promise.resolve(records.deliveries);
    return new Promise((resolve, reject) => {
      const onDelivery = (): void => {
        if (records.deliveries.length < count) return;
        clearTimeout(timer);
        events.off('delivery', onDelivery);
        resolve(records.deliveries);
      };
      const timer = setTimeout(() => {
        events.off('delivery', onDelivery);
        reject(new Error(`waitForDeliveries: ${records.deliveries.length} of ${count} deliveries after ${timeoutMs} ms`));
      }, timeoutMs);
      events.on('delivery', onDelivery);
    });
  }

  return {
    url,
    close,
    deliveries: records.deliveries,
    typing: records.typing,
    tokenFetches: records.tokenFetches,
    calls: records.calls,
    uploads: records.uploads,
    unauthorized: records.unauthorized,
    unverified: context.unverified,
    userInteracted(openid, trigger, at) {
      context.windows.interact(openid, trigger, at ?? now());
    },
    sendWindow(openid) {
      const window = context.windows.get(openid);
      return window === undefined ? undefined : { ...window };
    },
    invalidateTokens: () => context.tokens.invalidateAll(),
    expireTokens: () => context.tokens.expireAll(),
    inject: (rule) => context.injections.add(rule),
    waitForDeliveries,
    // The casts: TypeScript cannot resolve EventEmitter's conditional listener type for a generic key.
    on(event, listener) {
      events.on(event, listener as never);
    },
    off(event, listener) {
      events.off(event, listener as never);
    },
    reset() {
      clearRecords(records);
      context.injections.clear();
      context.windows.clear();
      context.typingUntil.clear();
    },
  };
}

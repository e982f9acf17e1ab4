import type { AddressInfo } from 'node:net';
import { buildFakeWechatApp } from './wechat-api/app.js';
import type { ApiCall, Delivery, FakeWechatEvents, TokenFetch, TypingRecord, UnauthorizedCall, Upload } from './wechat-api/context.js';
import { createFakeWechatContext, fakeWechatHandle } from './wechat-api/handle.js';
import type { InjectionRule } from './wechat-api/injections.js';
import type { InteractionTrigger, SendWindow } from './wechat-api/window-ledger.js';

export type { ApiCall, Delivery, FakeWechatEvents, TokenFetch, TypingRecord, UnauthorizedCall, Upload } from './wechat-api/context.js';
export type { CustomMessageType } from './wechat-api/custom-message.js';
export type { InjectionRule, WechatApiPath } from './wechat-api/injections.js';
export type { InteractionTrigger, SendWindow } from './wechat-api/window-ledger.js';

export interface FakeWechatApiOptions {
  appId: string;
  appSecret: string;
  /** Default 0 (any free port). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Token lifetime, seconds; default 7200 (docs/wechat-protocol.md §8). */
  tokenTtlSeconds?: number;
  /** Clock in ms, default `Date.now`; every rule with a time in it (tokens, windows, typing) reads it. */
  now?: () => number;
  /** Apply the 48-hour window and quotas of docs/wechat-protocol.md §9.3 to custom/send; default true. */
  enforceWindow?: boolean;
  /** Longest accepted text content in UTF-8 bytes, default 2048 (the real limit is undocumented, docs/wechat-protocol.md §9.1). */
  maxTextBytes?: number;
  /**
   * Apply the typing rules of docs/wechat-protocol.md §9.2: 45015 without an open window (when enforceWindow), 45080 without
   * an exchange in the last 30 s, 45081 for Typing while a Typing state (15 s) is active. Default
   * false: typing is cosmetic, so by default only the token and the command (45072) are checked.
   */
  strictTyping?: boolean;
  /**
   * Behave like an unverified account (个人号, or any without 客服接口 rights): with a valid token,
   * every custom/send and custom/typing answers 48001 `api unauthorized` and delivers nothing; the
   * token endpoints and media upload keep working. Each refusal is recorded in `unauthorized`.
   * Default false.
   */
  unverified?: boolean;
}

/** A running fake of `api.weixin.qq.com` on loopback. */
export interface FakeWechatApi {
  /** Base URL, e.g. `http://127.0.0.1:PORT` (no trailing slash). */
  readonly url: string;
  close(): Promise<void>;
  /** Accepted custom/send calls, oldest first. */
  readonly deliveries: readonly Delivery[];
  /** Accepted custom/typing calls. */
  readonly typing: readonly TypingRecord[];
  /** Every call to a token endpoint, whatever it answered (single-flight tests count these). */
  readonly tokenFetches: readonly TokenFetch[];
  /** Every API call and what it answered. */
  readonly calls: readonly ApiCall[];
  /** Accepted media uploads. */
  readonly uploads: readonly Upload[];
  /** custom/send and custom/typing calls refused with 48001 because the account is unverified. */
  readonly unauthorized: readonly UnauthorizedCall[];
  /** Whether it plays an unverified account (the `unverified` option). */
  readonly unverified: boolean;
  /**
   * The user did something that opens the customer-service window (docs/wechat-protocol.md §9.3): `message` → 5 sends for
   * 48 h; `event` (follow, menu click, scan) → 3 sends for 1 min. Not cumulative.
   */
  userInteracted(openid: string, trigger: InteractionTrigger, at?: number): void;
  /** The user's window as it stands (it may have expired), or undefined if never opened. */
  sendWindow(openid: string): SendWindow | undefined;
  /** Every token issued so far answers 40001 from now on (another system refreshed). */
  invalidateTokens(): void;
  /** Every token issued so far answers 42001 from now on. */
  expireTokens(): void;
  /** Faults for the next matching calls, applied FIFO per path. */
  inject(rule: InjectionRule): void;
  /** Resolves once `deliveries.length >= count`; rejects after `timeoutMs` (default 5000). */
  waitForDeliveries(count: number, timeoutMs?: number): Promise<readonly Delivery[]>;
  /** `delivery` (Delivery), `typing` (TypingRecord), `call` (ApiCall), `unauthorized` (UnauthorizedCall). */
  on<E extends keyof FakeWechatEvents>(event: E, listener: (...args: FakeWechatEvents[E]) => void): void;
  off<E extends keyof FakeWechatEvents>(event: E, listener: (...args: FakeWechatEvents[E]) => void): void;
  /** Forgets records, injections, windows and typing states; issued tokens stay as they are. */
  reset(): void;
}

/**
 * Starts a fake WeChat API server (docs/wechat-protocol.md: access tokens §8, customer-service send and typing §9,
 * errcodes §10, temporary media upload §12). Every answer is HTTP 200 with JSON, as
 * WeChat's, except an injected `httpStatus`.
 */
export async function startFakeWechatApi(options: FakeWechatApiOptions): Promise<FakeWechatApi> {
  const { context, abort } = createFakeWechatContext(options);
  const app = buildFakeWechatApp(context);
  await app.listen({ port: options.port ?? 0, host: options.host ?? '127.0.0.1' });
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return fakeWechatHandle(context, `http://${host}:${address.port}`, async () => {
    abort.abort();
    await app.close();
  });
}

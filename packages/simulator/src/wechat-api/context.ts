import { EventEmitter } from 'node:events';
import type { CustomMessageType } from './custom-message.js';
import type { InjectionQueue, WechatApiPath } from './injections.js';
import type { TokenKind, TokenStore } from './token-store.js';
import type { WindowLedger } from './window-ledger.js';

/** An accepted `custom/send` call. */
export interface Delivery {
  touser: string;
  msgtype: CustomMessageType;
  /** The request body, parsed. */
  body: Record<string, unknown>;
  /** When it was accepted (the fake's clock, ms). */
  at: number;
}

/** An accepted `custom/typing` call. */
export interface TypingRecord {
  touser: string;
  command: 'Typing' | 'CancelTyping';
  at: number;
}

/**
 * A customer-service call an unverified account may not make, answered 48001 `api unauthorized`
 * (docs/wechat-protocol.md §10): who it was for and what it would have been, when the body says.
 */
export interface UnauthorizedCall {
  path: '/cgi-bin/message/custom/send' | '/cgi-bin/message/custom/typing';
  touser?: string;
  /** custom/send's `msgtype`, or custom/typing's `command`. */
  what?: string;
  at: number;
}

/** A call to `/cgi-bin/token` or `/cgi-bin/stable_token`, whatever it answered. */
export interface TokenFetch {
  endpoint: TokenKind;
  forceRefresh: boolean;
  at: number;
}

/** Any API call and what it answered (`errcode` 0 on success; -1 for an injected non-JSON status). */
export interface ApiCall {
  path: WechatApiPath;
  errcode: number;
  httpStatus: number;
  at: number;
}

/** An accepted temporary-media upload (docs/wechat-protocol.md §12). */
export interface Upload {
  type: 'image' | 'voice' | 'video' | 'thumb';
  mediaId: string;
  filename: string;
  contentType: string;
  size: number;
  at: number;
}

/** Events a fake emits, with their listener arguments. */
export interface FakeWechatEvents {
  delivery: [Delivery];
  typing: [TypingRecord];
  call: [ApiCall];
  unauthorized: [UnauthorizedCall];
}

/** What the fake remembers; arrays are appended to and cleared in place so views stay live. */
export interface FakeWechatRecords {
  deliveries: Delivery[];
  typing: TypingRecord[];
  tokenFetches: TokenFetch[];
  calls: ApiCall[];
  uploads: Upload[];
  unauthorized: UnauthorizedCall[];
}

/** Everything the route plugins share: settings, state and the clock. */
export interface FakeWechatContext {
  appId: string;
  appSecret: string;
  enforceWindow: boolean;
  strictTyping: boolean;
  /** An account without the customer-service API: custom/send and custom/typing answer 48001. */
  unverified: boolean;
  maxTextBytes: number;
  now: () => number;
  tokens: TokenStore;
  windows: WindowLedger;
  injections: InjectionQueue;
  records: FakeWechatRecords;
  events: EventEmitter<FakeWechatEvents>;
  /** Per user: the instant a Typing state ends (strictTyping only). */
  typingUntil: Map<string, number>;
  /** Aborted on close, so injected delays do not outlive the server. */
  signal: AbortSignal;
}

export function createRecords(): FakeWechatRecords {
  return { deliveries: [], typing: [], tokenFetches: [], calls: [], uploads: [], unauthorized: [] };
}

export function clearRecords(records: FakeWechatRecords): void {
  for (const list of Object.values(records) as unknown[][]) list.length = 0;
}

export function createEvents(): EventEmitter<FakeWechatEvents> {
  // Tests may attach many `waitForDeliveries` listeners at once.
  const events = new EventEmitter<FakeWechatEvents>();
  events.setMaxListeners(0);
  return events;
}

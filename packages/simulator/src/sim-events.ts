import type { ParsedReply } from '@wxrelay/shared';
import type { CallbackAttempt, CallbackMode, ReplyKind } from './callback-client.js';
import type { InboundSpec } from './inbound-xml.js';

/** What every event carries: a sequence number (the SSE id), the user and when (ms). */
interface SimEventBase {
  readonly seq: number;
  /** The user's name as the page and the CLI know it. */
  readonly user: string;
  readonly openid: string;
  readonly at: number;
}

/** The user pushed something: sent to the gateway now. `ref` ties it to its {@link CallbackEvent}. */
export interface InboundEvent extends SimEventBase {
  readonly type: 'inbound';
  readonly ref: string;
  readonly mode: CallbackMode;
  readonly spec: InboundSpec;
  readonly msgId?: string;
}

/**
 * One of WeChat's tries of an inbound push ended without settling it (cut at 5 s, refused, …):
 * another follows. The try that settles it, or the last, is told by the {@link CallbackEvent}.
 */
export interface AttemptEvent extends SimEventBase {
  readonly type: 'attempt';
  readonly ref: string;
  readonly attempt: CallbackAttempt;
}

/** What the gateway answered to an inbound push (after WeChat's retries). */
export interface CallbackEvent extends SimEventBase {
  readonly type: 'callback';
  readonly ref: string;
  readonly outcome: 'ack' | 'reply' | 'failed';
  readonly tries: number;
  readonly status?: number;
  /** The passive reply, decrypted. */
  readonly reply?: ParsedReply;
  /** Which try got the passive reply (1–3). */
  readonly replyAttempt?: number;
  /** The gateway's label of its passive reply (`x-wxrelay-reply`): the answer, or a placeholder. */
  readonly replyKind?: ReplyKind;
  /** The try's number as the gateway counted it (`x-wxrelay-attempt`). */
  readonly gatewayAttempt?: number;
  readonly error?: string;
  readonly attempts: readonly CallbackAttempt[];
}

/** A customer-service message the fake API accepted for the user (custom/send, docs/wechat-protocol.md §9.1). */
export interface DeliveryEvent extends SimEventBase {
  readonly type: 'delivery';
  readonly msgtype: string;
  /** The custom/send body as the worker sent it. */
  readonly body: Record<string, unknown>;
}

/**
 * A customer-service call for the user that the fake API refused with 48001 `api unauthorized`
 * because it plays an unverified account: nothing reached the user.
 */
export interface UnauthorizedEvent extends SimEventBase {
  readonly type: 'unauthorized';
  readonly path: '/cgi-bin/message/custom/send' | '/cgi-bin/message/custom/typing';
  readonly errcode: 48001;
  /** custom/send's `msgtype` or custom/typing's `command`, when the body had one. */
  readonly what?: string;
}

/** A typing indicator the fake API accepted (custom/typing, docs/wechat-protocol.md §9.2). */
export interface TypingEvent extends SimEventBase {
  readonly type: 'typing';
  readonly command: 'Typing' | 'CancelTyping';
}

/** Everything the chat page and the CLI are told, one JSON object per SSE message. */
export type SimEvent = InboundEvent | AttemptEvent | CallbackEvent | DeliveryEvent | TypingEvent | UnauthorizedEvent;

/** A {@link SimEvent} before the hub numbers it. */
export type SimEventInput = SimEvent extends infer E ? (E extends SimEvent ? Omit<E, 'seq'> : never) : never;

export interface SimEventHub {
  publish(event: SimEventInput): SimEvent;
  /**
   * Calls `listener` for each new event whose user is in `users` (every user when undefined).
   * Returns the unsubscribe function.
   */
  subscribe(users: ReadonlySet<string> | undefined, listener: (event: SimEvent) => void): () => void;
  /** The most recent events of `users` (oldest first), for a page that reconnects or reloads. */
  history(users: ReadonlySet<string> | undefined): readonly SimEvent[];
}

/** Events kept for replay: enough for a long chat, bounded so a long run stays small. */
const HISTORY_LIMIT = 2000;

export function createSimEventHub(): SimEventHub {
  let seq = 0;
  const recent: SimEvent[] = [];
  const listeners = new Set<{ users: ReadonlySet<string> | undefined; listener: (event: SimEvent) => void }>();
  const matches = (users: ReadonlySet<string> | undefined, event: SimEvent): boolean => users === undefined || users.has(event.user);
  return {
    publish(input) {
      seq += 1;
      const event = { ...input, seq } as SimEvent;
      recent.push(event);
      if (recent.length > HISTORY_LIMIT) recent.splice(0, recent.length - HISTORY_LIMIT);
      for (const { users, listener } of listeners) if (matches(users, event)) listener(event);
      return event;
    },
    subscribe(users, listener) {
      const entry = { users, listener };
      listeners.add(entry);
      return () => listeners.delete(entry);
    },
    history: (users) => recent.filter((event) => matches(users, event)),
  };
}

import type { InboundJobPayload, Logger } from '@wxrelay/shared';
import type { Reply } from '../wechat/messages.js';

export type InboundMessage = InboundJobPayload['message'];

export interface HandlerContext {
  readonly message: InboundMessage;
  /** The queue job's dedup key: a stable id of this message across retries. */
  readonly messageKey: string;
  readonly log: Logger;
  /** Aborted when the worker shuts down or the job is cancelled. */
  readonly signal: AbortSignal;
  /** No retry follows if this attempt fails: a handler may answer with an apology instead. */
  readonly lastAttempt: boolean;
}

/** Produces the replies to one message (none: acknowledge silently). */
export type Handler = (ctx: HandlerContext) => Promise<readonly Reply[]>;

/** A string matches exactly (after trimming the input); `{ regex }` matches a pattern. */
export type Pattern = string | { readonly regex: string; readonly flags?: string };

/** What a rule looks at. Every field given must match; arrays mean "any of". */
export interface Match {
  /** WeChat `MsgType`: `text`, `image`, …, `event`, or an unknown type's name. */
  readonly msgType?: string | readonly string[];
  /** `Event` name as sent (`subscribe`, `CLICK`, `SCAN`, …). */
  readonly event?: string | readonly string[];
  readonly eventKey?: Pattern;
  /** Text content, or a voice message's recognition result. */
  readonly content?: Pattern;
}

export interface Route {
  readonly name: string;
  readonly match: Match | ((message: InboundMessage) => boolean);
  readonly handler: Handler;
  /** Slow handlers (an LLM) show the typing indicator while they run. */
  readonly slow?: boolean;
}

export interface Router {
  /** The first route that matches `message`, or undefined (acknowledge, no reply). */
  route(message: InboundMessage): Route | undefined;
}

/** The `MsgType` of a parsed message. */
export function msgTypeOf(message: InboundMessage): string {
  if (message.kind === 'unknown') return message.msgType;
  return message.kind;
}

/** The `Event` name of an event, as sent. */
export function eventNameOf(message: InboundMessage): string | undefined {
  if (message.kind !== 'event') return undefined;
  return message.event === 'other' ? message.eventName : message.event;
}

export function eventKeyOf(message: InboundMessage): string | undefined {
  if (message.kind !== 'event') return undefined;
  return 'eventKey' in message && typeof message.eventKey === 'string' ? message.eventKey : undefined;
}

/** What the user said: text content, or a voice message's recognition (when not empty). */
export function textOf(message: InboundMessage): string | undefined {
  if (message.kind === 'text') return message.content;
  if (message.kind === 'voice' && message.recognition !== undefined && message.recognition.trim() !== '') return message.recognition;
  return undefined;
}

function compilePattern(p: Pattern): (value: string | undefined) => boolean {
  if (typeof p === 'string') return (v) => v !== undefined && v.trim() === p;
  const re = new RegExp(p.regex, p.flags);
  return (v) => v !== undefined && re.test(v);
}

const oneOf = (allowed: string | readonly string[]) => {
  const set = new Set(typeof allowed === 'string' ? [allowed] : allowed);
  return (v: string | undefined) => v !== undefined && set.has(v);
};

/** Compiles a {@link Match} once (regexes included) into a predicate. Throws on a bad regex. */
export function compileMatch(match: Match): (message: InboundMessage) => boolean {
  const checks: ((m: InboundMessage) => boolean)[] = [];
  if (match.msgType !== undefined) {
    const ok = oneOf(match.msgType);
    checks.push((m) => ok(msgTypeOf(m)));
  }
  if (match.event !== undefined) {
    const ok = oneOf(match.event);
    checks.push((m) => ok(eventNameOf(m)));
  }
  if (match.eventKey !== undefined) {
    const ok = compilePattern(match.eventKey);
    checks.push((m) => ok(eventKeyOf(m)));
  }
  if (match.content !== undefined) {
    const ok = compilePattern(match.content);
    checks.push((m) => ok(textOf(m)));
  }
  return (m) => checks.every((c) => c(m));
}

/** A router over `routes`, first match wins: rules first, built-in handlers last. */
export function createRouter(routes: readonly Route[]): Router {
  const compiled = routes.map((r) => ({ route: r, test: typeof r.match === 'function' ? r.match : compileMatch(r.match) }));
  return {
    route(message) {
      return compiled.find((c) => c.test(message))?.route;
    },
  };
}

/** A route that always answers with the same replies (reply rules). */
export function staticRoute(name: string, match: Match, replies: readonly Reply[]): Route {
  return { name, match, handler: () => Promise.resolve(replies) };
}

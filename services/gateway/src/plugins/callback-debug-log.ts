import fp from 'fastify-plugin';
import type { FastifyBaseLogger, FastifyRequest, onRequestHookHandler } from 'fastify';
import { maskId, shorten } from '@wxrelay/shared/logging';
import type { InboundMessage } from '@wxrelay/shared/protocol';
import { asArray, methodsOf } from './wechat-timeouts.js';

export interface CallbackDebugLogOptions {
  /** The callback path (its GET and POST routes are logged). */
  readonly path: string;
}

/** Signatures are shown by their first characters: enough to compare with what WeChat's console or a capture shows. */
const SIGNATURE_CHARS = 6;
/** A message's content is shown by its first characters. */
const CONTENT_CHARS = 40;
/** Headers never logged (the logger would blank `authorization` anyway). */
const HIDDEN_HEADERS = new Set(['cookie', 'set-cookie', 'authorization', 'proxy-authorization']);

/** True when `log` writes debug lines (pino's check; a logger without it is asked by level name). */
export function debugEnabled(log: FastifyBaseLogger): boolean {
  const withCheck = log as FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean };
  return typeof withCheck.isLevelEnabled === 'function' ? withCheck.isLevelEnabled('debug') : log.level === 'debug' || log.level === 'trace';
}

/**
 * What WeChat sent, as a debug line may show it: signatures shortened, the openid masked,
 * `timestamp`, `nonce` and `encrypt_type` as they are; other parameters by name only.
 */
export function describeQuery(query: unknown): Record<string, unknown> {
  const q = (typeof query === 'object' && query !== null ? query : {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  const other: string[] = [];
  for (const [name, value] of Object.entries(q)) {
    const text = typeof value === 'string' ? value : undefined;
    switch (name) {
      case 'signature':
      case 'msg_signature':
        out[name] = text === undefined ? typeof value : shorten(text, SIGNATURE_CHARS);
        break;
      case 'openid':
        out[name] = text === undefined ? typeof value : maskId(text);
        break;
      case 'echostr':
        out[name] = text === undefined ? typeof value : shorten(text, SIGNATURE_CHARS);
        break;
      case 'timestamp':
      case 'nonce':
      case 'encrypt_type':
        out[name] = value;
        break;
      default:
        other.push(name);
    }
  }
  if (other.length > 0) out.otherParams = other;
  return out;
}

/** The request's headers without cookies and credentials. */
export function describeHeaders(headers: FastifyRequest['headers']): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) if (!HIDDEN_HEADERS.has(name.toLowerCase())) out[name] = value;
  return out;
}

/** A parsed push, as a debug line may show it: the openid masked, the content shortened. */
export function describeMessage(message: InboundMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { kind: message.kind, openid: maskId(message.fromUserName), createTime: message.createTime };
  if (message.kind === 'event') {
    out.event = message.event === 'other' ? message.eventName : message.event;
    if ('eventKey' in message && typeof message.eventKey === 'string') out.eventKey = shorten(message.eventKey, CONTENT_CHARS);
  } else {
    out.msgType = message.kind === 'unknown' ? message.msgType : message.kind;
    if (message.msgId !== undefined) out.msgId = message.msgId;
    if (message.kind === 'text') out.content = shorten(message.content, CONTENT_CHARS);
  }
  return out;
}

/**
 * Logs one parsed callback at debug level (nothing at info): the route calls it once it has opened
 * the push, e.g. `logCallbackMessage(req.log, opened.mode, message)`.
 */
export function logCallbackMessage(log: FastifyBaseLogger, mode: string, message: InboundMessage): void {
  if (!debugEnabled(log)) return;
  try {
    log.debug({ mode, message: describeMessage(message) }, 'callback message');
  } catch {
    // Debug output never fails a callback.
  }
}

/**
 * With LOG_LEVEL=debug, one line per request to the callback URL (GET verification and POST
 * pushes): its query parameters (see {@link describeQuery}) and headers (no cookies, no
 * credentials). An `onRequest` hook on those routes only, so even a request refused later (bad
 * signature, bad query, body too large) is seen. At info level it costs one level check.
 */
export const callbackDebugLogPlugin = fp<CallbackDebugLogOptions>(
  (app, opts, done) => {
    const hook: onRequestHookHandler = (req, _reply, next) => {
      if (debugEnabled(req.log)) {
        try {
          req.log.debug({ method: req.method, path: opts.path, query: describeQuery(req.query), headers: describeHeaders(req.headers) }, 'callback received');
        } catch {
          // Debug output never fails a callback.
        }
      }
      next();
    };
    app.addHook('onRoute', (route) => {
      if (route.url !== opts.path || !methodsOf(route.method).some((m) => m === 'GET' || m === 'POST')) return;
      route.onRequest = [...asArray(route.onRequest), hook];
    });
    done();
  },
  { name: 'wxrelay-callback-debug-log', fastify: '5.x' },
);

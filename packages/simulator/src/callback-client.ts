/**
 * WeChat's side of a callback: POSTs one push to a gateway the way WeChat does — signed query,
 * plain / compatible / safe body, 5 s per try, retries with the very same request — and reports
 * what the gateway answered, and when each try started and how it ended.
 *
 * docs/wechat-protocol.md §3 (query, envelope, timing and retries, `success`), §4 (encryption,
 * msg_signature), §4.5 and §7 (passive replies).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import {
  cdata,
  computeMsgSignature,
  computeSignature,
  deriveAesKey,
  encryptMessage,
  isWxError,
  openEncryptedReply,
  parseReplyXml,
  parseXml,
  type AesKey,
  type CallbackMode,
  type ParsedReply,
} from '@wxrelay/shared';

export type { CallbackMode } from '@wxrelay/shared';

/**
 * WeChat waits 5 s for an answer, then closes the connection and sends the next try at once
 * (docs/wechat-protocol.md §3.3): tries start at about 0, +5.0 s and +10.1 s.
 */
export const WECHAT_TIMEOUT_MS = 5000;
/**
 * Deliveries of one push. "总共重试三次" may mean 3 deliveries or 1 + 3 (docs/wechat-protocol.md §3.3 [UNCERTAIN]); the
 * simulator defaults to 3 and lets a test ask for 4.
 */
export const WECHAT_MAX_TRIES = 3;

export interface SendCallbackOptions {
  /** The callback URL as configured in the console, e.g. `http://127.0.0.1:3000/wx`. */
  readonly gatewayUrl: string;
  readonly token: string;
  readonly appId: string;
  /** Required for `compat` and `safe`. */
  readonly encodingAesKey?: string;
  readonly mode: CallbackMode;
  /** The plaintext push (see `inbound-xml.ts`). */
  readonly xml: string;
  /**
   * Per try; default {@link WECHAT_TIMEOUT_MS}. A try still unanswered then is cut (its connection
   * closed) and the next one is sent at once.
   */
  readonly timeoutMs?: number;
  /** Default {@link WECHAT_MAX_TRIES}. */
  readonly maxTries?: number;
  /** Pause before a retry that follows a fast failure (a cut try is its own pause); default 0. */
  readonly retryDelayMs?: number;
  /** Default the global `fetch`. */
  readonly fetch?: typeof fetch;
  /** Clock in ms for the `timestamp` parameter, default `Date.now`. */
  readonly now?: () => number;
  /** Aborts the whole exchange (pending try and retries). */
  readonly signal?: AbortSignal;
  /** Called as each try ends, before the next one starts (e.g. to show progress). */
  readonly onAttempt?: (attempt: CallbackAttempt) => void;
}

/**
 * How one try ended: answered (`ack`, `reply`), `cut` (no answer within the timeout: WeChat closed
 * the connection), `network` (no connection, or the gateway closed it), `status` (not HTTP 200),
 * `invalid` (a 200 whose body is neither `success` nor a valid passive reply).
 */
export type AttemptEnd = 'ack' | 'reply' | 'cut' | 'network' | 'status' | 'invalid';

/**
 * What wxrelay's gateway says about a passive answer in its response headers: `x-wxrelay-reply`
 * (`answer`, or `placeholder` for the "still thinking" text of the last try) and
 * `x-wxrelay-attempt` (which try the gateway thinks this is, 1–3). WeChat ignores both.
 */
export const WXRELAY_REPLY_HEADER = 'x-wxrelay-reply';
export const WXRELAY_ATTEMPT_HEADER = 'x-wxrelay-attempt';

/** A passive answer's label, from {@link WXRELAY_REPLY_HEADER}. */
export type ReplyKind = 'answer' | 'placeholder';

/** One delivery and how it went. */
export interface CallbackAttempt {
  /** 1 for the first try. */
  readonly attempt: number;
  /** When it was sent, in ms since the first try was sent (0 for the first). */
  readonly startedMs: number;
  /** From sending to its end (answer read, cut, or failure), ms. */
  readonly durationMs: number;
  readonly ended: AttemptEnd;
  /** HTTP status, when a response arrived. */
  readonly status?: number;
  /** Why this try did not count as answered (timeout, network error, bad status, invalid reply). */
  readonly error?: string;
  /** The response's `x-wxrelay-*` headers (lower-case names), when it had any. */
  readonly wxrelayHeaders?: Readonly<Record<string, string>>;
}

/** The request WeChat sent (identical on every try). */
export interface CallbackRequest {
  readonly url: string;
  readonly body: string;
}

/**
 * What the gateway answered: `ack` (`success` or an empty body), `reply` (a valid passive reply,
 * decrypted in safe/compatible mode), or `failed` after every try — the user would see
 * "该公众号暂时无法提供服务，请稍后再试".
 */
export interface CallbackResult {
  readonly outcome: 'ack' | 'reply' | 'failed';
  /** Deliveries made. */
  readonly tries: number;
  /** HTTP status of the last response, when one arrived. */
  readonly status?: number;
  /** Body of the last response ('' when none arrived). */
  readonly body: string;
  readonly reply?: ParsedReply;
  /** Which try (1-based) got the passive reply (`reply` only; the same as `tries`). */
  readonly replyAttempt?: number;
  /**
   * The passive reply's label from the gateway's {@link WXRELAY_REPLY_HEADER} header (`reply` only,
   * when the gateway sent one it knows): a real answer or a placeholder.
   */
  readonly replyKind?: ReplyKind;
  /** The answering try's number as the gateway saw it ({@link WXRELAY_ATTEMPT_HEADER}), when sent. */
  readonly gatewayAttempt?: number;
  /** Why the last try failed (`failed` only). */
  readonly error?: string;
  readonly attempts: readonly CallbackAttempt[];
  readonly request: CallbackRequest;
}

/** The addressing of a push, read from its XML (the query's `openid` and safe mode's `ToUserName`). */
interface PushAddress {
  readonly account?: string;
  readonly openid?: string;
}

function readAddress(xml: string): PushAddress {
  try {
    const fields = parseXml(xml);
    const to = fields['ToUserName'];
    const from = fields['FromUserName'];
    return { ...(typeof to === 'string' ? { account: to } : {}), ...(typeof from === 'string' ? { openid: from } : {}) };
  } catch {
    // A deliberately broken push is still sent: a gateway's answer to it is what a test wants.
    return {};
  }
}

function aesKeyFor(options: SendCallbackOptions): AesKey | undefined {
  if (options.mode === 'plain') return undefined;
  if (options.encodingAesKey === undefined) throw new Error(`${options.mode} mode needs encodingAesKey`);
  return deriveAesKey(options.encodingAesKey);
}

/**
 * The request exactly as WeChat would send it (docs/wechat-protocol.md §3.1, §3.2): `signature`, `timestamp`, `nonce`,
 * `openid`, and in compatible/safe mode `encrypt_type=aes` and `msg_signature` over `Encrypt`.
 * Safe mode sends `ToUserName` + `Encrypt`; compatible mode the plaintext fields + `Encrypt`.
 */
export function buildCallbackRequest(options: SendCallbackOptions, key = aesKeyFor(options)): CallbackRequest {
  const { token, appId, mode, xml } = options;
  const timestamp = String(Math.floor((options.now ?? Date.now)() / 1000));
  const nonce = String(randomBytes(4).readUInt32BE());
  const address = readAddress(xml);
  const query = new URLSearchParams({ signature: computeSignature(token, timestamp, nonce), timestamp, nonce });
  if (address.openid !== undefined) query.set('openid', address.openid);
  let body = xml;
  if (key !== undefined) {
    const encrypt = encryptMessage(key, xml, appId);
    query.set('encrypt_type', 'aes');
    query.set('msg_signature', computeMsgSignature(token, timestamp, nonce, encrypt));
    const encryptLine = `<Encrypt>${cdata(encrypt)}</Encrypt>`;
    body =
      mode === 'safe'
        ? `<xml>\n<ToUserName>${cdata(address.account ?? '')}</ToUserName>\n${encryptLine}\n</xml>`
        : xml.replace(/<\/xml>\s*$/, `${encryptLine}\n</xml>`);
  }
  const url = new URL(options.gatewayUrl);
  for (const [name, value] of query) url.searchParams.append(name, value);
  return { url: url.toString(), body };
}

type Reading = { ok: true; outcome: 'ack' } | { ok: true; outcome: 'reply'; reply: ParsedReply } | { ok: false; error: string };

/**
 * Reads a 200 answer as WeChat does: `success` or nothing is an ack; otherwise it must be a
 * passive reply — encrypted (docs/wechat-protocol.md §4.5) in safe mode, plain in plain mode, either in compatible mode —
 * addressed back to the user who wrote.
 */
function readAnswer(body: string, mode: CallbackMode, key: AesKey | undefined, options: SendCallbackOptions, address: PushAddress): Reading {
  if (body === '' || body === 'success') return { ok: true, outcome: 'ack' };
  const encrypted = body.includes('<Encrypt>');
  if (encrypted && key === undefined) return { ok: false, error: 'encrypted reply to a plain-mode push' };
  if (!encrypted && mode === 'safe') return { ok: false, error: 'plaintext reply to a safe-mode push' };
  let reply: ParsedReply;
  try {
    const xml = encrypted && key !== undefined ? openEncryptedReply({ token: options.token, key, appId: options.appId, xml: body }) : body;
    reply = parseReplyXml(xml);
  } catch (err) {
    const code = isWxError(err) ? err.code : 'WX_ERR_XML';
    return { ok: false, error: `invalid reply (${code}${err instanceof Error ? `: ${err.message}` : ''})` };
  }
  if (address.openid !== undefined && reply.toUserName !== address.openid) {
    return { ok: false, error: 'reply ToUserName is not the user who wrote' };
  }
  if (address.account !== undefined && reply.fromUserName !== address.account) {
    return { ok: false, error: 'reply FromUserName is not the account written to' };
  }
  return { ok: true, outcome: 'reply', reply };
}

function describeFetchError(err: unknown, timeoutMs: number): { ended: 'cut' | 'network'; error: string } {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return { ended: 'cut', error: `no answer within ${timeoutMs} ms` };
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return { ended: 'network', error: `network error${err instanceof Error ? ` (${err.message}${cause})` : ''}` };
}

/** The `x-wxrelay-*` headers of a response, or undefined when it has none. */
function wxrelayHeadersOf(headers: Headers): Record<string, string> | undefined {
  const found: Record<string, string> = {};
  for (const [name, value] of headers) if (name.startsWith('x-wxrelay-')) found[name] = value;
  return Object.keys(found).length === 0 ? undefined : found;
}

function replyLabelsOf(headers: Readonly<Record<string, string>> | undefined): { replyKind?: ReplyKind; gatewayAttempt?: number } {
  const kind = headers?.[WXRELAY_REPLY_HEADER];
  const attempt = Number(headers?.[WXRELAY_ATTEMPT_HEADER]);
  return {
    ...(kind === 'answer' || kind === 'placeholder' ? { replyKind: kind } : {}),
    ...(Number.isInteger(attempt) && attempt > 0 ? { gatewayAttempt: attempt } : {}),
  };
}

/**
 * Delivers one push to a gateway as WeChat would, retrying the identical request (same body, same
 * MsgId, same query) after a timeout, a non-200 status or an invalid answer, up to `maxTries`.
 * A try unanswered after `timeoutMs` is cut — its fetch aborted, which closes the connection as
 * WeChat does — and the next try goes out at once, so with the defaults tries start at 0, ~5 s
 * and ~10 s. After a fast failure the next try waits `retryDelayMs` (default 0).
 *
 * @throws only when `compat`/`safe` is asked for without `encodingAesKey`, or `signal` aborts.
 */
export async function sendCallback(options: SendCallbackOptions): Promise<CallbackResult> {
  const timeoutMs = options.timeoutMs ?? WECHAT_TIMEOUT_MS;
  const maxTries = Math.max(1, options.maxTries ?? WECHAT_MAX_TRIES);
  const doFetch = options.fetch ?? fetch;
  const key = aesKeyFor(options);
  const request = buildCallbackRequest(options, key);
  const address = readAddress(options.xml);
  const attempts: CallbackAttempt[] = [];
  let last: { status?: number; body: string; error: string } = { body: '', error: 'not sent' };
  let firstStart: number | undefined;

  for (let attempt = 1; attempt <= maxTries; attempt += 1) {
    options.signal?.throwIfAborted();
    const start = performance.now();
    const startedMs = Math.round(start - (firstStart ??= start));
    const record = (end: Omit<CallbackAttempt, 'attempt' | 'startedMs' | 'durationMs'>): void => {
      const entry: CallbackAttempt = { attempt, startedMs, durationMs: Math.round(performance.now() - start), ...end };
      attempts.push(entry);
      options.onAttempt?.(entry);
    };
    // One deadline for the whole try, connection to the last byte of the body.
    const signals = [AbortSignal.timeout(timeoutMs), ...(options.signal === undefined ? [] : [options.signal])];
    let response: Response;
    let body: string;
    try {
      response = await doFetch(request.url, {
        method: 'POST',
        headers: { 'content-type': 'text/xml; charset=utf-8' },
        body: request.body,
        signal: AbortSignal.any(signals),
      });
      body = await response.text();
    } catch (err) {
      options.signal?.throwIfAborted();
      const { ended, error } = describeFetchError(err, timeoutMs);
      record({ ended, error });
      last = { body: '', error };
      continue;
    }
    const { status } = response;
    const wxrelayHeaders = wxrelayHeadersOf(response.headers);
    const headers = wxrelayHeaders === undefined ? {} : { wxrelayHeaders };
    if (status !== 200) {
      const error = `HTTP ${status}`;
      record({ ended: 'status', status, error, ...headers });
      last = { status, body, error };
    } else {
      const reading = readAnswer(body, options.mode, key, options, address);
      if (reading.ok) {
        record({ ended: reading.outcome, status, ...headers });
        const common = { tries: attempt, status, body, attempts, request };
        return reading.outcome === 'ack'
          ? { outcome: 'ack', ...common }
          : { outcome: 'reply', reply: reading.reply, replyAttempt: attempt, ...replyLabelsOf(wxrelayHeaders), ...common };
      }
      record({ ended: 'invalid', status, error: reading.error, ...headers });
      last = { status, body, error: reading.error };
    }
    if (attempt < maxTries && (options.retryDelayMs ?? 0) > 0) {
      await delay(options.retryDelayMs, undefined, options.signal === undefined ? {} : { signal: options.signal });
    }
  }
  return {
    outcome: 'failed',
    tries: attempts.length,
    ...(last.status === undefined ? {} : { status: last.status }),
    body: last.body,
    error: last.error,
    attempts,
    request,
  };
}

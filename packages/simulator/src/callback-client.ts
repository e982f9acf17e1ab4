/**
 * WeChat's side of a callback: POSTs one push to a gateway the way WeChat does — signed query,
 * plain / compatible / safe body, 5 s per try, retries with the very same request — and reports
 * what the gateway answered.
 *
 * docs/wechat-protocol.md §3 (query, envelope, timing and retries, `success`), §4 (encryption,
 * msg_signature), §4.5 and §7 (passive replies).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
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

/** WeChat waits 5 s for an answer (docs/wechat-protocol.md §3.3). */
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
  /** Per try; default {@link WECHAT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Default {@link WECHAT_MAX_TRIES}. */
  readonly maxTries?: number;
  /** Pause before a retry that follows a fast failure (a timeout is its own pause); default 0. */
  readonly retryDelayMs?: number;
  /** Default the global `fetch`. */
  readonly fetch?: typeof fetch;
  /** Clock in ms for the `timestamp` parameter, default `Date.now`. */
  readonly now?: () => number;
  /** Aborts the whole exchange (pending try and retries). */
  readonly signal?: AbortSignal;
}

/** One delivery and how it went. */
export interface CallbackAttempt {
  /** HTTP status, when a response arrived. */
  readonly status?: number;
  /** Why this try did not count as answered (timeout, network error, bad status, invalid reply). */
  readonly error?: string;
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

function describeFetchError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `no answer within ${timeoutMs} ms`;
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `network error${err instanceof Error ? ` (${err.message}${cause})` : ''}`;
}

/**
 * Delivers one push to a gateway as WeChat would, retrying the identical request (same body, same
 * MsgId, same query) after a timeout, a non-200 status or an invalid answer, up to `maxTries`.
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

  for (let attempt = 1; attempt <= maxTries; attempt += 1) {
    options.signal?.throwIfAborted();
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
      const error = describeFetchError(err, timeoutMs);
      attempts.push({ error });
      last = { body: '', error };
      continue;
    }
    const { status } = response;
    if (status !== 200) {
      const error = `HTTP ${status}`;
      attempts.push({ status, error });
      last = { status, body, error };
    } else {
      const reading = readAnswer(body, options.mode, key, options, address);
      if (reading.ok) {
        attempts.push({ status });
        const common = { tries: attempt, status, body, attempts, request };
        return reading.outcome === 'ack' ? { outcome: 'ack', ...common } : { outcome: 'reply', reply: reading.reply, ...common };
      }
      attempts.push({ status, error: reading.error });
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

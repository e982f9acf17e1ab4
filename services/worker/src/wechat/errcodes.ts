import { WxError, scrubSecrets } from '@wxrelay/shared';

/**
 * The one table that says what the worker does about each WeChat `errcode` (docs/wechat-protocol.md
 * §10). The API client and the processor both read it; nothing else switches on errcodes.
 *
 * `errmsg` usually ends with ` rid: …` / ` hint: […]`, so only the code is matched.
 *
 * @see https://developers.weixin.qq.com/doc/offiaccount/Getting_Started/Global_Return_Code.html
 */

/** What to do about one failed call. */
export type Reaction =
  /**
   * Transient: the job tries the message again (the queue's attempts and backoff space the tries),
   * at most `retries` times per part; the processor counts them in the job's saved progress.
   */
  | { readonly kind: 'retry'; readonly retries: number }
  /** The token is stale: expire it (compare-and-delete), fetch once, retry the call once. */
  | { readonly kind: 'refresh-token' }
  /** Over an API quota: stop the whole worker for `pauseMs`, then try the job again. */
  | { readonly kind: 'rate-limit'; readonly pauseMs: number }
  /** Permanent for this message: do not retry; the job fails with `reason` (a dead letter). */
  | { readonly kind: 'give-up'; readonly reason: string }
  /** Cosmetic (typing indicator): carry on as if it had worked. */
  | { readonly kind: 'ignore' };

/** Pseudo-codes for failures that never reached a WeChat answer. */
export const NETWORK_ERRCODE = 'network';
export const HTTP_5XX_ERRCODE = 'http-5xx';
/** A non-2xx, non-5xx answer without an errcode (WeChat answers 200 even to errors). */
export const HTTP_OTHER_ERRCODE = 'http-other';
export type PseudoErrcode = typeof NETWORK_ERRCODE | typeof HTTP_5XX_ERRCODE | typeof HTTP_OTHER_ERRCODE;

const retry = (retries: number): Reaction => ({ kind: 'retry', retries });
const giveUp = (reason: string): Reaction => ({ kind: 'give-up', reason });
const refresh: Reaction = { kind: 'refresh-token' };
const ignore: Reaction = { kind: 'ignore' };

/**
 * errcode → reaction. `-1` is retried only twice: WeChat may have accepted the message before it
 * answered "system error", and there is no idempotency key (docs/wechat-protocol.md §9.4), so each retry risks a duplicate.
 */
export const ERRCODE_REACTIONS: Readonly<Record<number | PseudoErrcode, Reaction>> = {
  [NETWORK_ERRCODE]: retry(3),
  [HTTP_5XX_ERRCODE]: retry(3),
  [HTTP_OTHER_ERRCODE]: giveUp('unexpected HTTP status without an errcode'),
  [-1]: retry(2),

  40001: refresh,
  40014: refresh,
  42001: refresh,

  45009: { kind: 'rate-limit', pauseMs: 10 * 60_000 },
  45011: { kind: 'rate-limit', pauseMs: 60_000 },
  45047: giveUp('45047 over the customer-service reply quota (5 per user message / 48 h, 3 per event / 1 min)'),
  45015: giveUp('45015 outside the 48 h customer-service window, or the user unfollowed'),
  48001: giveUp('48001 the account has no customer-service API permission'),
  48004: giveUp('48004 the API is banned for this account'),
  43004: giveUp('43004 the user does not follow the account'),
  43019: giveUp('43019 the user is on the account blacklist'),
  40003: giveUp('40003 invalid openid (another account’s, malformed, or not following)'),
  50002: giveUp('50002 the user is restricted'),
  45002: giveUp('45002 content too long (chunking should have prevented this)'),
  45008: giveUp('45008 too many news articles (send one)'),
  40007: giveUp('40007 invalid or expired media_id'),
  40008: giveUp('40008 invalid message type'),
  40033: giveUp('40033 invalid characters in the body'),
  47001: giveUp('47001 malformed JSON body'),
  44002: giveUp('44002 empty body'),
  41001: giveUp('41001 access_token missing'),
  40002: giveUp('40002 invalid grant_type'),
  40013: giveUp('40013 invalid appid: check WECHAT_APP_ID'),
  40125: giveUp('40125 invalid appsecret: check WECHAT_APP_SECRET'),
  40243: giveUp('40243 the AppSecret is frozen: unfreeze it in the console'),
  40164: giveUp('40164 the caller IP is not in the console IP whitelist'),
  89501: giveUp('89501 IP awaiting admin confirmation'),
  89503: giveUp('89503 IP needs admin confirmation'),
  89506: giveUp('89506 IP refused by the admin (blocked 24 h)'),
  89507: giveUp('89507 IP refused by the admin (blocked 1 h)'),
  61024: giveUp('61024 a third-party platform must use its own token'),

  // Typing indicator only (docs/wechat-protocol.md §9.2): bad command, no interaction within 30 s, already typing.
  45072: ignore,
  45080: ignore,
  45081: ignore,
};

/** Unknown codes are given up on: retrying an unexplained failure only risks duplicate replies. */
export function reactionFor(errcode: number | PseudoErrcode): Reaction {
  return ERRCODE_REACTIONS[errcode] ?? giveUp(`${errcode} unexpected errcode`);
}

/**
 * A WeChat API call that failed (after the one token refresh, for a rejected token). `errcode` is WeChat's
 * code or a pseudo-code; the message never carries the access token or the URL.
 */
export class WechatApiError extends WxError {
  readonly errcode: number | PseudoErrcode;
  readonly reaction: Reaction;
  /** The API path, e.g. `/cgi-bin/message/custom/send`. */
  readonly path: string;

  constructor(path: string, errcode: number | PseudoErrcode, errmsg: string, options?: { cause?: unknown; reaction?: Reaction }) {
    super(typeof errcode === 'number' ? 'WX_ERR_API' : 'WX_ERR_NETWORK', `${path}: ${errcode} ${scrubSecrets(errmsg)}`, options);
    this.errcode = errcode;
    this.reaction = options?.reaction ?? reactionFor(errcode);
    this.path = path;
  }
}

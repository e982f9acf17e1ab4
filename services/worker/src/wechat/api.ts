import type { Logger } from '@wxrelay/shared';
import type { CustomMessage } from './messages.js';
import { HTTP_5XX_ERRCODE, HTTP_OTHER_ERRCODE, NETWORK_ERRCODE, WechatApiError, type PseudoErrcode } from './errcodes.js';
import { HttpFailure, requestJson, type HttpTransport } from '../http.js';
import type { TokenStore } from './token-store.js';

export const CUSTOM_SEND_PATH = '/cgi-bin/message/custom/send';
export const CUSTOM_TYPING_PATH = '/cgi-bin/message/custom/typing';

/** The slice of the WeChat API the worker uses. */
export interface WechatApi {
  /** Sends one customer-service message; throws {@link WechatApiError} when it failed for good. */
  sendCustomMessage(message: CustomMessage): Promise<void>;
  /** Shows or cancels "typing…" (docs/wechat-protocol.md §9.2). Cosmetic: never throws. */
  typing(openid: string, command: 'Typing' | 'CancelTyping'): Promise<void>;
}

export interface WechatApiDeps {
  readonly baseUrl: string;
  readonly transport: HttpTransport;
  readonly tokens: TokenStore;
  readonly log: Logger;
  /** Per HTTP call. */
  readonly timeoutMs: number;
  /** Called once per answered (or failed) HTTP call: metrics of sends by errcode. */
  readonly onResult?: (path: string, errcode: number | PseudoErrcode) => void;
}

/**
 * The WeChat API client. A rejected token is expired (compare-and-delete) and the call made once
 * more with a fresh one (a token refresh, not a retry of a failure); any other failure throws a
 * {@link WechatApiError} carrying its reaction from the errcode table.
 *
 * Why no retries here: a send that failed transiently (−1, 5xx, network) is retried by the job
 * (queue attempts and backoff), and the processor counts those retries per part and errcode class
 * in the job's saved progress. Retrying here too multiplied the two (up to 3 × 6 tries of one part
 * for "−1 at most twice"), and a count kept in memory restarts with every job attempt and crash.
 */
export function createWechatApi(deps: WechatApiDeps): WechatApi {

  /** One HTTP call with `token`; every failure becomes a WechatApiError. */
  const attemptWith = async (path: string, body: unknown, token: string): Promise<void> => {
    let status: number;
    let json: unknown;
    try {
      ({ status, json } = await requestJson(`${deps.baseUrl}${path}?access_token=${encodeURIComponent(token)}`, body, {
        transport: deps.transport,
        timeoutMs: deps.timeoutMs,
      }));
    } catch (err) {
      if (!(err instanceof HttpFailure)) throw err;
      const code = err.status === undefined ? NETWORK_ERRCODE : HTTP_5XX_ERRCODE;
      deps.onResult?.(path, code);
      throw new WechatApiError(path, code, err.message, { cause: err });
    }
    const answer = (json ?? {}) as { errcode?: unknown; errmsg?: unknown };
    const errcode = typeof answer.errcode === 'number' ? answer.errcode : status >= 200 && status < 300 ? 0 : HTTP_OTHER_ERRCODE;
    deps.onResult?.(path, errcode);
    if (errcode !== 0) throw new WechatApiError(path, errcode, typeof answer.errmsg === 'string' ? answer.errmsg : `HTTP ${status}`);
  };

  const call = async (path: string, body: unknown): Promise<void> => {
    let refreshed = false;
    for (;;) {
      let usedToken: string | undefined;
      try {
        usedToken = await deps.tokens.get();
        await attemptWith(path, body, usedToken);
        return;
      } catch (err) {
        if (!(err instanceof WechatApiError)) throw err;
        const reaction = err.reaction;
        if (reaction.kind === 'ignore') return;
        if (reaction.kind === 'refresh-token' && !refreshed && usedToken !== undefined) {
          refreshed = true;
          deps.log.warn({ path, errcode: err.errcode }, 'access token rejected; refreshing once');
          await deps.tokens.invalidate(usedToken);
          continue;
        }
        throw err;
      }
    }
  };

  return {
    sendCustomMessage: (message) => call(CUSTOM_SEND_PATH, message),
    async typing(openid, command) {
      try {
        await call(CUSTOM_TYPING_PATH, { touser: openid, command });
      } catch (err) {
        deps.log.debug({ err, command }, 'typing indicator not shown');
      }
    },
  };
}

import { NETWORK_ERRCODE, HTTP_5XX_ERRCODE, WechatApiError, reactionFor } from './errcodes.js';
import { HttpFailure, requestJson, type HttpTransport } from '../http.js';

/** A freshly issued access token. */
export interface IssuedToken {
  readonly accessToken: string;
  /** Lifetime in seconds, as WeChat said (`expires_in`, "目前是7200秒之内的值"). */
  readonly expiresInSec: number;
}

/** Fetches a token from WeChat; the token store decides when. */
export type FetchToken = () => Promise<IssuedToken>;

export interface TokenFetcherDeps {
  readonly baseUrl: string;
  readonly appId: string;
  readonly appSecret: string;
  /**
   * `stable`: `POST /cgi-bin/stable_token` (normal mode returns the same token to every caller and
   * never invalidates another holder's). `classic`: `GET /cgi-bin/token` (each call replaces the
   * previous token, which keeps working 5 minutes).
   */
  readonly endpoint: 'stable' | 'classic';
  readonly transport: HttpTransport;
  readonly timeoutMs: number;
}

/**
 * The token endpoint call (docs/wechat-protocol.md §8.1, §8.2). Errors are {@link WechatApiError}s, so
 * the errcode table decides: a wrong secret or IP gives up, a network error is retried.
 *
 * @see https://developers.weixin.qq.com/doc/service/api/base/api_getstableaccesstoken
 */
export function createTokenFetcher(deps: TokenFetcherDeps): FetchToken {
  const path = deps.endpoint === 'stable' ? '/cgi-bin/stable_token' : '/cgi-bin/token';
  return async () => {
    let answer: { status: number; json: unknown };
    try {
      answer =
        deps.endpoint === 'stable'
          ? await requestJson(
              `${deps.baseUrl}${path}`,
              { grant_type: 'client_credential', appid: deps.appId, secret: deps.appSecret, force_refresh: false },
              { transport: deps.transport, timeoutMs: deps.timeoutMs },
            )
          : await requestJson(
              `${deps.baseUrl}${path}?${new URLSearchParams({ grant_type: 'client_credential', appid: deps.appId, secret: deps.appSecret }).toString()}`,
              undefined,
              { transport: deps.transport, timeoutMs: deps.timeoutMs },
            );
    } catch (err) {
      if (err instanceof HttpFailure) {
        throw new WechatApiError(path, err.status === undefined ? NETWORK_ERRCODE : HTTP_5XX_ERRCODE, err.message, { cause: err });
      }
      throw err;
    }
    const body = (answer.json ?? {}) as { access_token?: unknown; expires_in?: unknown; errcode?: unknown; errmsg?: unknown };
    if (typeof body.errcode === 'number' && body.errcode !== 0) {
      const errmsg = typeof body.errmsg === 'string' ? body.errmsg : '';
      // The token endpoint answers 40001 to a wrong AppSecret: refreshing again would only loop.
      const loops = reactionFor(body.errcode).kind === 'refresh-token';
      throw new WechatApiError(path, body.errcode, errmsg, loops ? { reaction: { kind: 'give-up', reason: `${body.errcode} from the token endpoint: check WECHAT_APP_SECRET` } } : {});
    }
    if (typeof body.access_token !== 'string' || body.access_token === '' || typeof body.expires_in !== 'number' || body.expires_in <= 0) {
      throw new WechatApiError(path, -1, `HTTP ${answer.status}: answer without access_token/expires_in`);
    }
    return { accessToken: body.access_token, expiresInSec: body.expires_in };
  };
}

/**
 * WeChat's URL verification (docs/wechat-protocol.md §2): what the console sends when the server config is submitted.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { computeSignature } from '@wxrelay/shared';
import { WECHAT_TIMEOUT_MS } from './callback-client.js';

export interface VerifyUrlOptions {
  readonly gatewayUrl: string;
  readonly token: string;
  readonly timeoutMs?: number;
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
}

export interface VerifyUrlResult {
  /** True when the answer was HTTP 200 with exactly the echostr as its body. */
  readonly ok: boolean;
  readonly status?: number;
  readonly body: string;
  readonly echostr: string;
  readonly error?: string;
}

/**
 * `GET <url>?signature&timestamp&nonce&echostr`; the gateway must answer the raw echostr. For
 * Official Accounts the echostr is plaintext in every mode (docs/wechat-protocol.md §2).
 */
export async function verifyCallbackUrl(options: VerifyUrlOptions): Promise<VerifyUrlResult> {
  const timestamp = String(Math.floor((options.now ?? Date.now)() / 1000));
  const nonce = String(randomBytes(4).readUInt32BE());
  const echostr = randomBytes(8).readBigUInt64BE().toString();
  const url = new URL(options.gatewayUrl);
  url.searchParams.set('signature', computeSignature(options.token, timestamp, nonce));
  url.searchParams.set('timestamp', timestamp);
  url.searchParams.set('nonce', nonce);
  url.searchParams.set('echostr', echostr);
  const timeoutMs = options.timeoutMs ?? WECHAT_TIMEOUT_MS;
  try {
    const response = await (options.fetch ?? fetch)(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = await response.text();
    const ok = response.status === 200 && body === echostr;
    return { ok, status: response.status, body, echostr, ...(ok ? {} : { error: response.status === 200 ? 'body is not the echostr' : `HTTP ${response.status}` }) };
  } catch (err) {
    return { ok: false, body: '', echostr, error: err instanceof Error ? err.message : String(err) };
  }
}

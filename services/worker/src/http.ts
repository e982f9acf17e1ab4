import { scrubSecrets } from '@wxrelay/shared';

/** The `fetch` the HTTP clients take as a dependency (tests and main pass `globalThis.fetch`). */
export type Fetch = typeof globalThis.fetch;

/** A call that got no usable HTTP answer: network error, timeout, or a 5xx. */
export class HttpFailure extends Error {
  override readonly name = 'HttpFailure';
  /** HTTP status, when the server answered. */
  readonly status?: number;
  readonly timedOut: boolean;

  constructor(message: string, opts: { status?: number; timedOut?: boolean; cause?: unknown }) {
    super(scrubSecrets(message), { cause: opts.cause });
    if (opts.status !== undefined) this.status = opts.status;
    this.timedOut = opts.timedOut ?? false;
  }
}

export interface RequestJsonOptions {
  readonly fetch: Fetch;
  readonly timeoutMs: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Aborts the call early (e.g. the worker is shutting down). */
  readonly signal?: AbortSignal;
}

/**
 * Sends `body` as JSON (POST; GET when `body` is undefined) and parses the JSON answer. Network errors, timeouts, 5xx and unparseable
 * bodies throw {@link HttpFailure}; other statuses are returned with their (possibly empty) body so
 * the caller can read an API error. `url` may hold a token: it never reaches an error message.
 */
export async function requestJson(url: string, body: unknown, opts: RequestJsonOptions): Promise<{ status: number; json: unknown }> {
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal === undefined ? timeout : AbortSignal.any([timeout, opts.signal]);
  const path = new URL(url).pathname;
  let res: Response;
  try {
    res = await opts.fetch(
      url,
      body === undefined
        ? { method: 'GET', ...(opts.headers === undefined ? {} : { headers: { ...opts.headers } }), signal }
        : { method: 'POST', headers: { 'content-type': 'application/json; charset=utf-8', ...opts.headers }, body: JSON.stringify(body), signal },
    );
  } catch (err) {
    const timedOut = timeout.aborted;
    throw new HttpFailure(timedOut ? `${path}: timed out after ${opts.timeoutMs} ms` : `${path}: ${describe(err)}`, { timedOut, cause: err });
  }
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    throw new HttpFailure(`${path}: body not read (${describe(err)})`, { status: res.status, timedOut: timeout.aborted, cause: err });
  }
  if (res.status >= 500) throw new HttpFailure(`${path}: HTTP ${res.status}`, { status: res.status });
  if (text.trim() === '') return { status: res.status, json: undefined };
  try {
    return { status: res.status, json: JSON.parse(text) as unknown };
  } catch {
    throw new HttpFailure(`${path}: HTTP ${res.status} with a body that is not JSON`, { status: res.status });
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}

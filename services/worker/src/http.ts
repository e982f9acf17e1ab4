import { request, type Dispatcher } from 'undici';
import { scrubSecrets } from '@wxrelay/shared';
import { WorkerError } from './errors.js';
import { deadlineSignal } from './timeout.js';

/** One HTTP exchange, as {@link requestJson} asks a transport for it. */
export interface HttpRequest {
  readonly method: 'GET' | 'POST';
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  /** Aborts the call (the timeout, or the caller's own signal). */
  readonly signal: AbortSignal;
}

/** What a transport answers: the status once headers arrived, the body when asked for. */
export interface HttpResponse {
  readonly status: number;
  text(): Promise<string>;
}

/**
 * The transport the HTTP clients take as a dependency: `main.ts` passes
 * {@link createHttpTransport}; a test may pass a fake, or any WHATWG `fetch` through
 * {@link fetchTransport}.
 */
export type HttpTransport = (req: HttpRequest) => Promise<HttpResponse>;

/** A WHATWG `fetch`. */
export type Fetch = typeof globalThis.fetch;

/**
 * The production transport: undici's `request` over keep-alive connections. For one small JSON
 * call it costs a fraction of `fetch` (which builds a Request, a Response and web streams around
 * the same undici client).
 */
export function createHttpTransport(opts: { readonly dispatcher?: Dispatcher } = {}): HttpTransport {
  return async (req) => {
    const res = await request(req.url, {
      method: req.method,
      headers: req.headers,
      ...(req.body === undefined ? {} : { body: req.body }),
      signal: req.signal,
      ...(opts.dispatcher === undefined ? {} : { dispatcher: opts.dispatcher }),
    });
    return { status: res.statusCode, text: () => res.body.text() };
  };
}

/** A transport over a WHATWG `fetch` (e.g. a scripted one in a test). */
export function fetchTransport(fetch: Fetch): HttpTransport {
  return async (req) => {
    const res = await fetch(req.url, { method: req.method, headers: { ...req.headers }, ...(req.body === undefined ? {} : { body: req.body }), signal: req.signal });
    return { status: res.status, text: () => res.text() };
  };
}

/** A call that got no usable HTTP answer: network error, timeout, or a 5xx (`WX_ERR_HTTP`). */
export class HttpFailure extends WorkerError {
  override readonly name = 'HttpFailure';
  /** HTTP status, when the server answered. */
  readonly status?: number;
  readonly timedOut: boolean;

  constructor(message: string, opts: { status?: number; timedOut?: boolean; cause?: unknown }) {
    super('WX_ERR_HTTP', scrubSecrets(message), { cause: opts.cause });
    if (opts.status !== undefined) this.status = opts.status;
    this.timedOut = opts.timedOut ?? false;
  }
}

export interface RequestJsonOptions {
  readonly transport: HttpTransport;
  readonly timeoutMs: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Aborts the call early (e.g. the worker is shutting down). */
  readonly signal?: AbortSignal;
}

const JSON_CONTENT_TYPE = { 'content-type': 'application/json; charset=utf-8' } as const;

/**
 * Sends `body` as JSON (POST; GET when `body` is undefined) and parses the JSON answer. Network errors, timeouts, 5xx and unparseable
 * bodies throw {@link HttpFailure}; other statuses are returned with their (possibly empty) body so
 * the caller can read an API error. The timeout covers the whole call, body included. `url` may
 * hold a token: it never reaches an error message.
 */
export async function requestJson(url: string, body: unknown, opts: RequestJsonOptions): Promise<{ status: number; json: unknown }> {
  const { signal, timedOut: timeoutFired } = deadlineSignal(opts.timeoutMs, opts.signal);
  let res: HttpResponse;
  try {
    res = await opts.transport(
      body === undefined
        ? { method: 'GET', url, headers: opts.headers ?? {}, signal }
        : { method: 'POST', url, headers: opts.headers === undefined ? JSON_CONTENT_TYPE : { ...JSON_CONTENT_TYPE, ...opts.headers }, body: JSON.stringify(body), signal },
    );
  } catch (err) {
    const timedOut = timeoutFired();
    throw new HttpFailure(timedOut ? `${pathOf(url)}: timed out after ${opts.timeoutMs} ms` : `${pathOf(url)}: ${describe(err)}`, { timedOut, cause: err });
  }
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    throw new HttpFailure(`${pathOf(url)}: body not read (${describe(err)})`, { status: res.status, timedOut: timeoutFired(), cause: err });
  }
  if (res.status >= 500) throw new HttpFailure(`${pathOf(url)}: HTTP ${res.status}`, { status: res.status });
  if (text.trim() === '') return { status: res.status, json: undefined };
  try {
    return { status: res.status, json: JSON.parse(text) as unknown };
  } catch {
    throw new HttpFailure(`${pathOf(url)}: HTTP ${res.status} with a body that is not JSON`, { status: res.status });
  }
}

/** The path alone, for error messages (the query may hold the access token). */
function pathOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('//') + 2);
  if (start === -1) return '/';
  const end = url.search(/[?#]/);
  return end === -1 ? url.slice(start) : url.slice(start, end);
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}

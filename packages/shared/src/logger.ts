import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths pino blanks out wherever they appear (one level of nesting under any key, plus the top
 * level). Secrets must never reach a log line: the AppSecret, access tokens, the AES key(s), the
 * LLM key, the metrics bearer token and any Authorization header.
 */
const SECRET_KEYS = [
  'appSecret',
  'secret',
  'accessToken',
  'access_token',
  'token',
  'encodingAesKey',
  'encodingAesKeys',
  'aesKey',
  'apiKey',
  'authorization',
  'password',
] as const;

export const REDACT_PATHS: readonly string[] = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'req.headers.authorization',
  'req.headers.cookie',
];

export interface LoggerFactoryOptions {
  /** Logger name, e.g. the service. */
  readonly name: string;
  readonly level?: string;
  /** Human-readable output (pino-pretty); main.ts turns it on only when stdout is a TTY. */
  readonly pretty?: boolean;
  /** Where NDJSON goes (default stdout). Tests pass a stream and read the lines back. */
  readonly destination?: DestinationStream;
}

/** Strips the query string (which carries openid, signature, access_token…) from a URL or path. */
export function stripQuery(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** Masks `access_token=…`, `secret=…` and similar query values in free text (error messages, URLs). */
export function scrubSecrets(text: string): string {
  return text.replace(/((?:access_token|secret|appsecret|signature|msg_signature|openid)=)[^&\s"']+/gi, '$1[Redacted]');
}

/**
 * An identifier (openid, …) as a log line may show it: enough to tell users apart while debugging,
 * never the whole value. `oia2TjuEGTNoeX76QEjQNrcURxG8` → `oia2…G8`; an id of 9 characters or
 * fewer keeps only its first one (`u-log` → `u…`). The one masking rule of every wxrelay log line.
 */
export function maskId(id: string): string {
  const chars = Array.from(id);
  if (chars.length === 0) return '';
  if (chars.length <= 9) return `${chars[0]}…`;
  return `${chars.slice(0, 4).join('')}…${chars.slice(-2).join('')}`;
}

/**
 * The first `max` characters of `text` (code points, so an emoji is never split) and `…` when
 * something was cut: a signature shortened to recognise it, a message's content to skim it.
 */
export function shorten(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max).join('')}…`;
}

interface RequestLike {
  method?: string;
  url?: string;
  id?: unknown;
  ip?: string;
  headers?: Record<string, unknown>;
}

/**
 * Request serializer that never logs the query string: WeChat puts the user's openid and the
 * signature there, and fastify's default serializer prints `req.url` whole.
 */
export function serializeRequest(req: RequestLike): Record<string, unknown> {
  return {
    method: req.method,
    url: req.url === undefined ? undefined : stripQuery(req.url),
    id: req.id,
    remoteAddress: req.ip,
  };
}

function serializeError(err: unknown): unknown {
  const out = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  if (typeof out.message === 'string') out.message = scrubSecrets(out.message);
  if (typeof out.stack === 'string') out.stack = scrubSecrets(out.stack);
  return out;
}

/** The pino options every wxrelay logger uses (fastify takes these for its own logger too). */
export function loggerOptions(opts: Omit<LoggerFactoryOptions, 'destination'>): LoggerOptions {
  return {
    name: opts.name,
    level: opts.level ?? 'info',
    redact: { paths: [...REDACT_PATHS], censor: '[Redacted]' },
    serializers: { req: serializeRequest, err: serializeError, error: serializeError },
    base: { service: opts.name },
    ...(opts.pretty === true
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } }
      : {}),
  };
}

/** The one root logger of a process; children carry context (`log.child({ jobId })`). */
export function createLogger(opts: LoggerFactoryOptions): Logger {
  const options = loggerOptions(opts);
  return opts.destination === undefined ? pino(options) : pino(options, opts.destination);
}

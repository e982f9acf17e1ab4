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

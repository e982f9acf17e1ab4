import { createServer, type Server } from 'node:http';
import { timingSafeEqual } from 'node:crypto';

export interface MetricsServerOptions {
  readonly host: string;
  /** 0 asks the OS for a free port (tests); callers skip the server when metrics are off. */
  readonly port: number;
  /** When set, requests need `Authorization: Bearer <token>`. */
  readonly token?: string;
  /** Renders the exposition text (e.g. prom-client `registry.metrics()`). */
  readonly render: () => Promise<string>;
  readonly contentType: string;
}

export interface MetricsServer {
  readonly url: string;
  close(): Promise<void>;
}

function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined || !header.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice(7));
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * A small private listener for Prometheus: `GET /metrics` only, optionally behind a bearer token.
 * It is kept off the public port so that WeChat-facing traffic can never read it.
 */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    if (opts.token !== undefined && !bearerMatches(req.headers.authorization, opts.token)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized');
      return;
    }
    // A render that throws (not only one that rejects) is a 500 too, never an uncaught error.
    Promise.resolve()
      .then(() => opts.render())
      .then(
        (text) => res.writeHead(200, { 'content-type': opts.contentType }).end(text),
        () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable'),
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Once listening, an error of the listener itself must not take the process down with it.
  server.on('error', () => undefined);
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What became of the metrics listener: serving, or off because it could not listen. */
export type MetricsListener =
  | { readonly state: 'on'; readonly server: MetricsServer }
  | {
      readonly state: 'off';
      /** The system error code (EADDRINUSE, EACCES, EADDRNOTAVAIL…), when there is one. */
      readonly code: string | undefined;
      /** One line for the operator: what happened and how to fix it. */
      readonly warning: string;
    };

/**
 * Opens the metrics listener, never throwing: metrics are optional, and a process that serves
 * traffic must not die because its metrics port is taken (a second worker on the same host gets
 * the same default port). Any listen error gives `state: 'off'` with a one-line warning to log.
 * (Callers skip it altogether when METRICS_PORT is 0.)
 */
export async function openMetricsListener(opts: MetricsServerOptions): Promise<MetricsListener> {
  try {
    return { state: 'on', server: await startMetricsServer(opts) };
  } catch (err) {
    const code = err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' ? (err as NodeJS.ErrnoException).code : undefined;
    const where = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
    const fix = 'metrics are off for this process; set METRICS_PORT to a free port, or 0 to turn them off';
    const warning =
      code === 'EADDRINUSE'
        ? `metrics port ${opts.port} in use: ${fix}`
        : `metrics listener could not bind ${where} (${code ?? (err instanceof Error ? err.message : String(err))}): ${fix}${code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' ? ', or METRICS_HOST to an address of this host' : ''}`;
    return { state: 'off', code, warning };
  }
}

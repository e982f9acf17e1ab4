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
    opts.render().then(
      (text) => res.writeHead(200, { 'content-type': opts.contentType }).end(text),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
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

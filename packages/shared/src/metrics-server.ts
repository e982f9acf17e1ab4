import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';

/**
 * A service's own routes on its private listener (the gateway's queue dashboard, the worker's
 * `/healthz`), registered as an encapsulated fastify plugin before the listener binds.
 */
export interface PrivateRoutes {
  /** What they are, for the operator (e.g. `queue dashboard`). */
  readonly name: string;
  readonly register: (app: FastifyInstance) => Promise<void> | void;
  /**
   * When set, a failure to register these routes does not keep the listener down: it serves
   * without them, and `onFailure` is told why (once). Without it, the failure is the listener's.
   */
  readonly optional?: { readonly onFailure: (err: unknown) => void };
}

export interface MetricsServerOptions {
  readonly host: string;
  /** 0 asks the OS for a free port (tests); callers skip the server when metrics are off. */
  readonly port: number;
  /** When set, `/metrics` needs `Authorization: Bearer <token>`. */
  readonly token?: string;
  /** Renders the exposition text (e.g. prom-client `registry.metrics()`). */
  readonly render: () => Promise<string>;
  readonly contentType: string;
  /** The service's other private routes; each guards itself (its own auth, or none for health). */
  readonly routes?: readonly PrivateRoutes[];
}

export interface MetricsServer {
  /** `/metrics` on this listener. */
  readonly url: string;
  /** `http://host:port`, for the other private routes. */
  readonly origin: string;
  close(): Promise<void>;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** True when `header` is `Bearer <token>` (compared in constant time). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined || !header.startsWith('Bearer ')) return false;
  return sameSecret(header.slice(7), token);
}

/** True when `header` is HTTP basic auth for `user` with password `token` (what a browser sends). */
export function basicMatches(header: string | undefined, user: string, token: string): boolean {
  if (header === undefined || !/^basic /i.test(header)) return false;
  return sameSecret(Buffer.from(header.slice(6).trim(), 'base64').toString('utf8'), `${user}:${token}`);
}

async function buildPrivateApp(opts: MetricsServerOptions, routes: readonly PrivateRoutes[]): Promise<FastifyInstance> {
  // No logger of its own: what matters (a dashboard that failed) is logged by the service.
  const app = Fastify({ logger: false, forceCloseConnections: true });
  app.get('/metrics', async (req, reply) => {
    if (opts.token !== undefined && !bearerMatches(req.headers.authorization, opts.token)) {
      return reply.code(401).header('www-authenticate', 'Bearer').type('text/plain').send('unauthorized');
    }
    // A render that throws (not only one that rejects) is a 500 too, never an uncaught error.
    try {
      const text = await Promise.resolve().then(() => opts.render());
      return await reply.code(200).type(opts.contentType).send(text);
    } catch {
      return reply.code(500).type('text/plain').send('metrics unavailable');
    }
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).type('text/plain').send('not found'));
  for (const r of routes) await app.register(async (child) => { await r.register(child); });
  try {
    await app.ready();
  } catch (err) {
    await app.close().catch(() => undefined);
    throw err;
  }
  return app;
}

/**
 * The private listener: a small fastify app serving Prometheus `GET /metrics` (optionally behind a
 * bearer token) and the service's own private routes. It is kept off the public port so that
 * WeChat-facing traffic can never read it. Optional routes that fail to register are left out (the
 * rest still serves); any other failure, or a listen error, rejects.
 */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const routes = opts.routes ?? [];
  let app: FastifyInstance;
  try {
    app = await buildPrivateApp(opts, routes);
  } catch (err) {
    // A fastify app whose plugin failed cannot be used: build it again, trying each optional part
    // on its own to learn which failed, and leave those out.
    const required = routes.filter((r) => r.optional === undefined);
    if (required.length === routes.length) throw err;
    const kept: PrivateRoutes[] = [...required];
    for (const r of routes.filter((x) => x.optional !== undefined)) {
      try {
        await (await buildPrivateApp(opts, [...kept, r])).close();
        kept.push(r);
      } catch (why) {
        r.optional?.onFailure(why);
      }
    }
    app = await buildPrivateApp(opts, kept);
  }
  try {
    await app.listen({ port: opts.port, host: opts.host });
  } catch (err) {
    await app.close().catch(() => undefined);
    throw err;
  }
  // Once listening, an error of the listener itself must not take the process down with it.
  app.server.on('error', () => undefined);
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const origin = `http://${host}:${port}`;
  return {
    url: `${origin}/metrics`,
    origin,
    close: () => app.close(),
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

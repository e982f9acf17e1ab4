import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { assertClusterKeyLayout, type GatewayConfig } from '@wxrelay/shared/config';
import { loggerOptions, type Logger } from '@wxrelay/shared/logging';
import { deriveAesKey } from '@wxrelay/shared/protocol';
import type { ProducerPath } from '@wxrelay/shared/queue';
import { installErrorHandler } from './errors.js';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.js';
import { answersPlugin } from './plugins/answers.js';
import { callbackDebugLogPlugin } from './plugins/callback-debug-log.js';
import { healthPlugin } from './plugins/health.js';
import { queuePlugin } from './plugins/queue.js';
import { queueGaugesPlugin } from './plugins/queue-gauges.js';
import { redisPlugin } from './plugins/redis.js';
import { wechatTimeoutsPlugin } from './plugins/wechat-timeouts.js';
import { MAX_BODY_BYTES, xmlBodyPlugin } from './plugins/xml-body.js';
import { wechatRoutes } from './routes/wechat.js';

export interface GatewayDeps {
  /** The process's root logger; when absent fastify builds one with the same options. */
  readonly logger?: Logger;
  readonly metrics?: GatewayMetrics;
  /** BullMQ key prefix and queue name (tests use fresh ones). */
  readonly queuePrefix?: string;
  readonly queueName?: string;
  /** Clock in Unix ms (tests move it). */
  readonly now?: () => number;
  /** The callback path WeChat is configured with. */
  readonly path?: string;
  /** `addBulk` forces the producer's fallback path (tests run the whole suite on both paths). */
  readonly producerPath?: ProducerPath;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's Prometheus metrics (served by a separate listener). */
    metrics: GatewayMetrics;
  }
}

export type GatewayApp = FastifyInstance;

/**
 * Builds the gateway: a fastify app of plugins (redis, queue, xml body, health) and the WeChat
 * routes. It does not listen; `main.ts` does, and tests use `inject()`.
 */
export async function buildApp(config: GatewayConfig, deps: GatewayDeps = {}): Promise<GatewayApp> {
  const queuePrefix = deps.queuePrefix ?? config.queuePrefix;
  // In a Redis Cluster every script must touch one slot per call: refuse a queue prefix without a hash tag.
  assertClusterKeyLayout(config.redis, queuePrefix);
  const metrics = deps.metrics ?? createGatewayMetrics();
  // Typed as fastify's logger interface, so the app is a plain FastifyInstance for the plugins.
  const loggerInstance: FastifyBaseLogger | undefined = deps.logger;
  const app = Fastify({
    ...(loggerInstance === undefined ? { logger: loggerOptions({ name: 'gateway', level: config.logLevel }) } : { loggerInstance }),
    // One line per refusal comes from the error handler; a log line per accepted callback would
    // cost more than the rest of the request (and the URL holds openid and signature).
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request: building one (with its redaction) is a visible share of the
    // gateway's CPU under load (bench/analysis.md), for a request id nobody reads. Refusals are
    // logged with their method and path.
    childLoggerFactory: (logger) => logger,
    bodyLimit: MAX_BODY_BYTES,
    // On close: refuse new requests with 503 (WeChat retries elsewhere), finish those in flight.
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    trustProxy: true,
  });
  installErrorHandler(app);
  app.decorate('metrics', metrics);

  await app.register(redisPlugin, { topology: config.redis });
  await app.register(queuePlugin, {
    timeoutMs: config.enqueueTimeoutMs,
    ackReplicas: config.ackReplicas,
    prefix: queuePrefix,
    shards: config.queueShards,
    ...(deps.queueName === undefined ? {} : { queueName: deps.queueName }),
    ...(deps.producerPath === undefined ? {} : { producerPath: deps.producerPath }),
  });
  await app.register(answersPlugin, { config: config.replies, jobKeyPrefixes: app.queueLayouts.all.map((q) => q.jobPrefix) });
  await app.register(xmlBodyPlugin);
  await app.register(healthPlugin);
  await app.register(queueGaugesPlugin);
  const path = deps.path ?? '/wx';
  // Before the routes: these hook the callback routes as they are declared (onRoute).
  await app.register(wechatTimeoutsPlugin, { path });
  await app.register(callbackDebugLogPlugin, { path });
  wechatRoutes(app, {
    path,
    secrets: {
      token: config.wechat.token,
      appId: config.wechat.appId,
      aesKeys: config.wechat.encodingAesKeys.map(deriveAesKey),
      requireEncryption: config.wechat.requireEncryption,
    },
    timestampToleranceSeconds: config.wechat.timestampToleranceSeconds,
    metrics,
    now: deps.now ?? Date.now,
  });
  return app;
}

import { Redis } from 'ioredis';
import { checkRedisDurabilityWhenReady, createLogger, isWxError, loadWorkerConfig, openMetricsListener, type MetricsServer, type WorkerConfig } from '@wxrelay/shared';
import { createConversationMemory } from './conversation-memory.js';
import { createTokenFetcher } from './fetch-token.js';
import { createBuiltinRoutes } from './handlers.js';
import { createHttpTransport } from './http.js';
import { createInboundWorker } from './inbound-worker.js';
import { createLlmClient } from './llm.js';
import { createWorkerMetrics } from './metrics.js';
import { createQuotaLedger } from './quota-ledger.js';
import { loadReplyRules } from './reply-rules.js';
import { createRouter } from './router.js';
import { createTokenStore } from './token-store.js';
import { createWechatApi } from './wechat-api.js';

function readConfig(): WorkerConfig {
  try {
    return loadWorkerConfig(process.env);
  } catch (err) {
    if (isWxError(err, 'WX_ERR_CONFIG')) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

const config = readConfig();
const log = createLogger({ name: 'worker', level: config.logLevel, pretty: process.stdout.isTTY });
const { appId } = config.wechat;

const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
redis.on('error', (err) => log.error({ err }, 'redis connection error'));
// Warns (never fails) when Redis would lose queued messages: no persistence, or eviction. Runs once
// Redis is up, whenever that is.
void checkRedisDurabilityWhenReady(redis, log);

const metrics = createWorkerMetrics();
const transport = createHttpTransport();
const tokens = createTokenStore({
  redis,
  appId,
  log,
  onRefresh: metrics.tokenRefresh,
  fetchToken: createTokenFetcher({
    baseUrl: config.wechat.apiBaseUrl,
    appId,
    appSecret: config.wechat.appSecret,
    endpoint: config.wechat.tokenEndpoint,
    transport,
    timeoutMs: config.wechatApiTimeoutMs,
  }),
});
const api = createWechatApi({ baseUrl: config.wechat.apiBaseUrl, transport, tokens, log, timeoutMs: config.wechatApiTimeoutMs, onResult: metrics.apiResult });

const rules = config.replyRulesFile === undefined ? [] : await loadReplyRules(config.replyRulesFile);
const chatbot =
  config.llm === undefined
    ? undefined
    : {
        client: createLlmClient({ baseUrl: config.llm.baseUrl, model: config.llm.model, timeoutMs: config.llm.timeoutMs, transport, ...(config.llm.apiKey === undefined ? {} : { apiKey: config.llm.apiKey }) }),
        memory: createConversationMemory({ redis, appId }),
        ...(config.llm.systemPrompt === undefined ? {} : { systemPrompt: config.llm.systemPrompt }),
      };
const router = createRouter([...rules, ...createBuiltinRoutes({ welcomeMessage: config.welcomeMessage, ...(chatbot === undefined ? {} : { chatbot }) })]);

// The metrics listener before any job is taken: a port already taken (a second worker on this
// host gets the same default) turns metrics off for this process with one warning, never the
// process itself.
let metricsServer: MetricsServer | undefined;
if (config.metrics.port !== 0) {
  const listener = await openMetricsListener({
    port: config.metrics.port,
    host: config.metrics.host,
    render: () => metrics.registry.metrics(),
    contentType: metrics.registry.contentType,
    ...(config.metrics.token === undefined ? {} : { token: config.metrics.token }),
  });
  if (listener.state === 'on') metricsServer = listener.server;
  else log.warn({ port: config.metrics.port, code: listener.code }, listener.warning);
}

const inbound = createInboundWorker({
  connection: redis,
  prefix: config.queuePrefix,
  appId,
  concurrency: config.concurrency,
  lockDurationMs: config.lockDurationMs,
  stalledIntervalMs: config.stalledIntervalMs,
  api,
  router,
  ledger: createQuotaLedger({ redis, appId }),
  log,
  metrics,
  chunkBytes: config.chunkBytes,
  inDoubtSends: config.inDoubtSends,
});

log.info({ concurrency: config.concurrency, llm: config.llm !== undefined, rules: rules.length, metrics: metricsServer?.url ?? 'off' }, 'worker started');

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'shutting down: no new jobs, finishing the in-flight ones');
  // Bounded as a whole: with Redis unreachable, closing would otherwise wait forever.
  setTimeout(() => {
    log.error('shutdown did not finish in time; exiting');
    process.exit(1);
  }, config.shutdownTimeoutMs + 5_000).unref();
  await inbound.close(config.shutdownTimeoutMs);
  await metricsServer?.close();
  await redis.quit().catch(() => redis.disconnect());
  log.info('worker stopped');
  process.exit(0);
}
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    shutdown(signal).catch((err: unknown) => {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  });
}

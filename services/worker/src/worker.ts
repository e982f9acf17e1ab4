import { Queue, type Worker } from 'bullmq';
import { assertClusterKeyLayout, checkRedisDurabilityWhenReady, hashTagOf, INBOUND_QUEUE, type JobName, type Logger, type WorkerConfig } from '@wxrelay/shared';
import { createRedisConnection, describeRedisTopology, type RedisClient } from '@wxrelay/shared/redis';
import { answerKeys, createAnswerStore, DEFAULT_ANSWER_TTL_MS, queueKeys } from '@wxrelay/shared/queue';
import { createQuotaLedger } from './delivery/ledger.js';
import { createHealthCheck, type HealthReport } from './health.js';
import { createHttpTransport, type HttpTransport } from './http.js';
import { createInboundWorker } from './inbound-worker.js';
import { createWorkerMetrics, type WorkerMetrics } from './metrics.js';
import type { AnswerChannel } from './pipeline/job.js';
import type { InboundJobData, JobResult } from './pipeline/processor.js';
import { createBuiltinRoutes } from './replies/builtin.js';
import { createLlmClient } from './replies/llm.js';
import { createConversationMemory } from './replies/memory.js';
import { createRouter } from './replies/router.js';
import { loadReplyRules } from './replies/rules.js';
import type { UserTurns } from './user-turns.js';
import { createWechatApi } from './wechat/api.js';
import { createTokenFetcher } from './wechat/token-fetcher.js';
import { createTokenStore } from './wechat/token-store.js';

/** The outside world the worker talks to, beside what the configuration names. */
export interface WorkerDeps {
  /** The process's root logger. */
  readonly log: Logger;
  /** HTTP for WeChat and the LLM (their base URLs are configuration); default undici keep-alive. */
  readonly transport?: HttpTransport;
  /** Default: a fresh registry with Node's default metrics. */
  readonly metrics?: WorkerMetrics;
  /** Clock in Unix ms. */
  readonly now?: () => number;
  /**
   * The appid under which the worker's Redis state is kept (token cache, quota ledger, turns,
   * conversation memory); default `config.wechat.appId`. Tests give each worker its own on a shared Redis.
   */
  readonly stateAppId?: string;
  /** BullMQ queue name (default the inbound queue). */
  readonly queueName?: string;
  /** Test knobs: the typing refresh interval and the first wait of a job waiting for its turn. */
  readonly typingIntervalMs?: number;
  readonly turnRetryDelayMs?: number;
  /** How often expired inbox answers are swept (passive mode); default 60 s. */
  readonly inboxSweepMs?: number;
}

/** A built worker: everything wired, not taking jobs until {@link RunningWorker.start}. */
export interface RunningWorker {
  readonly worker: Worker<InboundJobData, JobResult, JobName>;
  readonly turns: UserTurns;
  readonly metrics: WorkerMetrics;
  readonly redis: RedisClient;
  /** How many reply rules were loaded (REPLY_RULES_FILE). */
  readonly rules: number;
  /** What `/healthz` answers: Redis answers, the worker runs, no 45009 pause. */
  health(): Promise<HealthReport>;
  /** Starts taking jobs. */
  start(): void;
  /**
   * Stops taking jobs, lets the in-flight ones finish for up to `timeoutMs` (default
   * WORKER_SHUTDOWN_TIMEOUT_MS), then closes the worker and its Redis connection.
   */
  close(timeoutMs?: number): Promise<void>;
}

/**
 * The worker as production runs it (main.ts) and the tests build it: one Redis connection, the
 * WeChat client with its shared token, the router (reply rules, then the built-in handlers and the
 * LLM), the quota ledger, and the BullMQ worker running the processor.
 */
export async function buildWorker(config: WorkerConfig, deps: WorkerDeps): Promise<RunningWorker> {
  const { log } = deps;
  const appId = deps.stateAppId ?? config.wechat.appId;
  const rules = config.replyRulesFile === undefined ? [] : await loadReplyRules(config.replyRulesFile);

  // In a Redis Cluster every script must touch one slot per call: refuse a queue prefix without a hash tag.
  assertClusterKeyLayout(config.redis, config.queuePrefix);
  // Waits for Redis (no command fails while it is away) and reconnects forever: BullMQ's worker
  // connection. REDIS_URL, Sentinel or Cluster, as configured.
  const redis = createRedisConnection(config.redis, 'worker');
  redis.on('error', (err: Error) => log.error({ err }, 'redis connection error'));
  log.info({ redis: describeRedisTopology(config.redis), queuePrefix: config.queuePrefix }, 'redis topology');
  // Warns (never fails) when Redis would lose queued messages: no persistence, or eviction. Runs once
  // Redis is up, whenever that is.
  void checkRedisDurabilityWhenReady(redis, log);

  const metrics = deps.metrics ?? createWorkerMetrics();
  const transport = deps.transport ?? createHttpTransport();
  const tokens = createTokenStore({
    redis,
    appId,
    log,
    onRefresh: metrics.tokenRefresh,
    onRefreshFailure: metrics.tokenRefreshFailed,
    ...(deps.now === undefined ? {} : { now: deps.now }),
    fetchToken: createTokenFetcher({
      baseUrl: config.wechat.apiBaseUrl,
      appId: config.wechat.appId,
      appSecret: config.wechat.appSecret,
      endpoint: config.wechat.tokenEndpoint,
      transport,
      timeoutMs: config.wechatApiTimeoutMs,
    }),
  });
  const api = createWechatApi({ baseUrl: config.wechat.apiBaseUrl, transport, tokens, log, timeoutMs: config.wechatApiTimeoutMs, onResult: metrics.apiResult });

  const chatbot =
    config.llm === undefined
      ? undefined
      : {
          client: createLlmClient({ baseUrl: config.llm.baseUrl, model: config.llm.model, timeoutMs: config.llm.timeoutMs, transport, ...(config.llm.apiKey === undefined ? {} : { apiKey: config.llm.apiKey }) }),
          memory: createConversationMemory({ redis, appId }),
          ...(config.llm.systemPrompt === undefined ? {} : { systemPrompt: config.llm.systemPrompt }),
        };
  const router = createRouter([...rules, ...createBuiltinRoutes({ welcomeMessage: config.welcomeMessage, ...(chatbot === undefined ? {} : { chatbot }) })]);

  const answers = answerChannel(config, redis, deps, metrics);
  const sweeper = answers?.mode === 'passive' ? startInboxSweeper(answers, deps, metrics) : undefined;
  const unwatchInbox = answers === undefined ? undefined : metrics.watchInbox(() => answers.store.pending());
  let warnedNoApi = false;
  const noCustomerServiceApi = (): void => {
    metrics.noCustomerServiceApi();
    if (warnedNoApi) return;
    warnedNoApi = true;
    log.error(
      { errcode: 48001, replyMode: config.replies.mode, fix: 'REPLY_MODE=passive' },
      'WeChat answered 48001: this account has no customer-service API (unverified accounts, e.g. personal subscription accounts, never do), so no answer can be sent this way. Run the gateways and workers with REPLY_MODE=passive (README: "Accounts without the customer-service API"). Logged once per process; counted in wxrelay_worker_no_customer_service_api_total.',
    );
  };

  const queueTag = hashTagOf(config.queuePrefix);
  const inbound = createInboundWorker({
    connection: redis,
    prefix: config.queuePrefix,
    ...(deps.queueName === undefined ? {} : { queueName: deps.queueName }),
    appId,
    concurrency: config.concurrency,
    lockDurationMs: config.lockDurationMs,
    stalledIntervalMs: config.stalledIntervalMs,
    api,
    router,
    // A tagged queue prefix is the cluster key layout: the ledger's keys carry the queue's tag (its slot).
    ledger: createQuotaLedger({ redis, appId, ...(queueTag === undefined ? {} : { hashTag: queueTag }) }),
    log,
    metrics,
    chunkBytes: config.chunkBytes,
    inDoubtSends: config.inDoubtSends,
    ...(deps.typingIntervalMs === undefined ? {} : { typingIntervalMs: deps.typingIntervalMs }),
    ...(deps.turnRetryDelayMs === undefined ? {} : { turnRetryDelayMs: deps.turnRetryDelayMs }),
    ...(deps.now === undefined ? {} : { now: deps.now }),
    ...(answers === undefined ? {} : { answers }),
    noCustomerServiceApi,
  });

  // Read by the metrics at scrape time only (job counts, the oldest waiting job, the rate-limit key).
  const watchedQueue = new Queue(deps.queueName ?? INBOUND_QUEUE, { connection: redis, prefix: config.queuePrefix });
  watchedQueue.on('error', () => undefined); // the connection's own handler logs Redis errors
  const unwatch = metrics.watchQueue(watchedQueue);

  return {
    worker: inbound.worker,
    turns: inbound.turns,
    metrics,
    redis,
    rules: rules.length,
    health: createHealthCheck({ redis, worker: inbound.worker }),
    start: () => inbound.run(),
    async close(timeoutMs = config.shutdownTimeoutMs) {
      await inbound.close(timeoutMs);
      if (sweeper !== undefined) clearInterval(sweeper);
      unwatchInbox?.();
      unwatch();
      await watchedQueue.close().catch(() => undefined);
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

/** The passive channel of REPLY_MODE passive or auto; undefined in customer-service mode. */
function answerChannel(config: WorkerConfig, redis: RedisClient, deps: WorkerDeps, metrics: WorkerMetrics): AnswerChannel | undefined {
  const { mode, placeholder, moreMarker, pageBytes, inboxTtlMs } = config.replies;
  if (mode === 'customer-service') return undefined;
  const keys = answerKeys(queueKeys(config.queuePrefix, deps.queueName ?? INBOUND_QUEUE).jobPrefix);
  const store = createAnswerStore(redis, keys, { answerTtlMs: DEFAULT_ANSWER_TTL_MS, inboxTtlMs });
  return { mode, store, placeholder, moreMarker, pageBytes, onExpired: (n) => metrics.inboxExpired(n) };
}

/** Expires inbox answers past INBOX_TTL_SECONDS, counting them (every worker sweeps; each answer expires once). */
function startInboxSweeper(answers: AnswerChannel, deps: WorkerDeps, metrics: WorkerMetrics): NodeJS.Timeout {
  const now = deps.now ?? Date.now;
  const timer = setInterval(() => {
    answers.store.sweep(now()).then(
      (n) => metrics.inboxExpired(n),
      (err: unknown) => deps.log.warn({ err }, 'inbox sweep failed; the next one tries again'),
    );
  }, deps.inboxSweepMs ?? 60_000);
  timer.unref();
  return timer;
}

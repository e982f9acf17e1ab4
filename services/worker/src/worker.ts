import { Job, Queue, type Worker } from 'bullmq';
import { assertClusterKeyLayout, checkRedisDurabilityWhenReady, hashTagOf, INBOUND_QUEUE, type JobName, type Logger, type WorkerConfig } from '@wxrelay/shared';
import { createRedisConnection, describeRedisTopology, type RedisClient } from '@wxrelay/shared/redis';
import { answerKeys, createAnswerStore, DEFAULT_ANSWER_TTL_MS, queueLayouts, type AnswerStore, type QueueLayouts, type QueueShard } from '@wxrelay/shared/queue';
import { createChangeLedger, createQuotaLedger, type QuotaLedger } from './delivery/ledger.js';
import { createHealthCheck, type HealthReport } from './health.js';
import { createHttpTransport, type HttpTransport } from './http.js';
import { createInboundWorker, type InboundWorker } from './inbound-worker.js';
import { createWorkerMetrics, type WorkerMetrics } from './metrics.js';
import type { AnswerChannel } from './pipeline/job.js';
import type { InboundJobData, JobResult } from './pipeline/processor.js';
import { createBuiltinRoutes } from './replies/builtin.js';
import { createLlmClient } from './replies/llm.js';
import { createConversationMemory } from './replies/memory.js';
import { createRouter } from './replies/router.js';
import { loadReplyRules } from './replies/rules.js';
import { createLayoutGates, crossLayoutAnswers } from './shard-change.js';
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
  /** The BullMQ worker of the first queue (shard 0 of QUEUE_SHARDS; the only one by default). */
  readonly worker: Worker<InboundJobData, JobResult, JobName>;
  /** The per-user turns of the first queue. */
  readonly turns: UserTurns;
  /** One BullMQ worker per queue consumed: every shard of QUEUE_SHARDS, then of QUEUE_SHARDS_ALSO. */
  readonly workers: readonly Worker<InboundJobData, JobResult, JobName>[];
  /** The queues consumed, in the order of {@link RunningWorker.workers}. */
  readonly queues: readonly QueueShard[];
  /** Each queue's per-user turns, by the queue's prefix. */
  turnsOf(queue: QueueShard): UserTurns;
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
 * LLM), the quota ledger, and one BullMQ worker per queue (QUEUE_SHARDS: every shard, and while it
 * changes the other layout's too, QUEUE_SHARDS_ALSO) running the processor, each with its own
 * blocking connection (BullMQ duplicates the connection), turns and passive answers; the token, the
 * ledger, the router and the LLM's memory are shared.
 *
 * WORKER_CONCURRENCY is per process: split evenly over the queues (⌈C / queues⌉ each, at least one);
 * users spread evenly over the shards, so do the jobs.
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

  const layouts = queueLayouts(config.queuePrefix, config.queueShards.count, config.queueShards.also, deps.queueName ?? INBOUND_QUEUE);
  const queues = layouts.all;
  const answerStores = answerStoresFor(config, redis, layouts);
  const sweeper = config.replies.mode === 'passive' ? startInboxSweeper([...answerStores.values()], deps, metrics) : undefined;
  const unwatchInbox = answerStores.size === 0 ? undefined : metrics.watchInbox(async () => (await Promise.all([...answerStores.values()].map((s) => s.pending()))).reduce((a, b) => a + b, 0));
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

  // A user's quota ledger lives beside their queue: under a tagged prefix its keys carry the queue's
  // tag (its slot), so a job's turn, quota and progress are one script. While QUEUE_SHARDS changes,
  // both layouts' jobs of a user share the one of their current-layout queue (createChangeLedger).
  const taggedLedgers = new Map<string, QuotaLedger>();
  const taggedLedger = (prefix: string): QuotaLedger => {
    let l = taggedLedgers.get(prefix);
    if (l === undefined) {
      const tag = hashTagOf(prefix);
      taggedLedgers.set(prefix, (l = createQuotaLedger({ redis, appId, ...(tag === undefined ? {} : { hashTag: tag }) })));
    }
    return l;
  };
  const also = layouts.also;
  const changeLedger =
    also === undefined
      ? undefined
      : createChangeLedger(
          redis,
          (openid) => taggedLedger(layouts.current.shardFor(openid).prefix),
          (openid) => taggedLedger(also.shardFor(openid).prefix),
        );
  const ledgerOf = (prefix: string): QuotaLedger => changeLedger ?? taggedLedger(prefix);

  const concurrency = Math.max(1, Math.ceil(config.concurrency / queues.length));
  const inbound = new Map<string, InboundWorker>();
  const turnsOf = (queue: QueueShard): UserTurns => {
    const found = inbound.get(queue.prefix);
    if (found === undefined) throw new Error(`no worker for queue ${queue.name}`);
    return found.turns;
  };
  const promoteIn = async (queue: QueueShard, jobId: string): Promise<void> => {
    const worker = inbound.get(queue.prefix)?.worker;
    if (worker === undefined) return;
    const job = await Job.fromId(worker, jobId);
    if (job !== undefined && (await job.isDelayed())) await job.promote().catch(() => undefined);
  };
  const gates = createLayoutGates({ redis, appId, layouts, turnsOf, promote: promoteIn });
  const storeOf = (queue: QueueShard): AnswerStore => answerStores.get(queue.prefix)!;
  // A WeChat rate limit pauses the account's every send: every queue's workers, in every process.
  const rateLimit = async (ms: number): Promise<void> => {
    await Promise.all([...inbound.values()].map((w) => w.worker.rateLimit(ms)));
  };
  for (const queue of queues) {
    const answers = answerChannel(config, metrics, answerStores.has(queue.prefix) ? crossLayoutAnswers(redis, storeOf(queue), queue, layouts, storeOf) : undefined);
    inbound.set(
      queue.prefix,
      createInboundWorker({
        connection: redis,
        prefix: queue.prefix,
        queueName: queue.queueName,
        appId,
        concurrency,
        lockDurationMs: config.lockDurationMs,
        stalledIntervalMs: config.stalledIntervalMs,
        api,
        router,
        ledger: ledgerOf(queue.prefix),
        log: queues.length === 1 ? log : log.child({ queue: queue.name }),
        metrics,
        chunkBytes: config.chunkBytes,
        inDoubtSends: config.inDoubtSends,
        ...(deps.typingIntervalMs === undefined ? {} : { typingIntervalMs: deps.typingIntervalMs }),
        ...(deps.turnRetryDelayMs === undefined ? {} : { turnRetryDelayMs: deps.turnRetryDelayMs }),
        ...(deps.now === undefined ? {} : { now: deps.now }),
        ...(answers === undefined ? {} : { answers }),
        noCustomerServiceApi,
        gate: () => gates(queue),
        ...(queues.length === 1 ? {} : { rateLimit }),
      }),
    );
  }
  const workers = [...inbound.values()];

  // Read by the metrics at scrape time only (job counts, the oldest waiting job, the rate-limit key).
  // skipMetasUpdate: a reader must not write the queue's meta (BullMQ's Queue would reset the event
  // stream's cap the producer set, INBOUND_EVENTS_MAX_LEN).
  const watchedQueues = queues.map((queue) => {
    const watched = new Queue(queue.queueName, { connection: redis, prefix: queue.prefix, skipMetasUpdate: true });
    watched.on('error', () => undefined); // the connection's own handler logs Redis errors
    // Labelled with the queue's name (the shard's, with QUEUE_SHARDS > 1), not BullMQ's queue name.
    const unwatch = metrics.watchQueue({
      name: queue.name,
      getJobCounts: (...types) => watched.getJobCounts(...types),
      getWaiting: (start, end) => watched.getWaiting(start, end),
      getRateLimitTtl: () => watched.getRateLimitTtl(),
    });
    return { watched, unwatch };
  });
  if (queues.length > 1) log.info({ queues: queues.map((q) => q.name), concurrencyPerQueue: concurrency, also: config.queueShards.also }, 'sharded inbound queue');

  return {
    worker: workers[0]!.worker,
    turns: workers[0]!.turns,
    workers: workers.map((w) => w.worker),
    queues,
    turnsOf,
    metrics,
    redis,
    rules: rules.length,
    health: createHealthCheck({ redis, workers: workers.map((w) => w.worker) }),
    start: () => {
      for (const w of workers) w.run();
    },
    async close(timeoutMs = config.shutdownTimeoutMs) {
      await Promise.all(workers.map((w) => w.close(timeoutMs)));
      if (sweeper !== undefined) clearInterval(sweeper);
      unwatchInbox?.();
      for (const { watched, unwatch } of watchedQueues) {
        unwatch();
        await watched.close().catch(() => undefined);
      }
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

/** Each queue's answer store (REPLY_MODE passive or auto), by prefix; none in customer-service mode. */
function answerStoresFor(config: WorkerConfig, redis: RedisClient, layouts: QueueLayouts): Map<string, AnswerStore> {
  const stores = new Map<string, AnswerStore>();
  if (config.replies.mode === 'customer-service') return stores;
  for (const queue of layouts.all) stores.set(queue.prefix, createAnswerStore(redis, answerKeys(queue.jobPrefix), { answerTtlMs: DEFAULT_ANSWER_TTL_MS, inboxTtlMs: config.replies.inboxTtlMs }));
  return stores;
}

/** The passive channel of REPLY_MODE passive or auto over one queue's store; undefined in customer-service mode. */
function answerChannel(config: WorkerConfig, metrics: WorkerMetrics, store: AnswerStore | undefined): AnswerChannel | undefined {
  const { mode, placeholder, moreMarker, pageBytes } = config.replies;
  if (mode === 'customer-service' || store === undefined) return undefined;
  return { mode, store, placeholder, moreMarker, pageBytes, onExpired: (n) => metrics.inboxExpired(n) };
}

/** Expires inbox answers past INBOX_TTL_SECONDS, counting them (every worker sweeps every queue's; each answer expires once). */
function startInboxSweeper(stores: readonly AnswerStore[], deps: WorkerDeps, metrics: WorkerMetrics): NodeJS.Timeout {
  const now = deps.now ?? Date.now;
  const timer = setInterval(() => {
    for (const store of stores) {
      store.sweep(now()).then(
        (n) => metrics.inboxExpired(n),
        (err: unknown) => deps.log.warn({ err }, 'inbox sweep failed; the next one tries again'),
      );
    }
  }, deps.inboxSweepMs ?? 60_000);
  timer.unref();
  return timer;
}

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { createQueueGaugeSource, queueGaugeDefinitions, type CountableQueue } from '@wxrelay/shared';
import type { RefreshCause } from './wechat/token-store.js';

/** How a job ended (a metrics label). */
export type JobOutcome = 'replied' | 'no-reply' | 'gave-up' | 'retry' | 'rate-limited' | 'waiting-turn' | 'failed' | 'answered-together';

/** What a new attempt did with a part whose send may or may not have reached WeChat. */
export type InDoubtAction = 'resent' | 'skipped';

/** Why an answer did not go out whole: `cut` to fit the user's quota, or `none` left (the job gave up). */
export type QuotaRefusal = 'cut' | 'none';
const QUOTA_REFUSALS: readonly QuotaRefusal[] = ['cut', 'none'];

/** What the worker reads of its queue for the metrics (BullMQ `Queue`'s public API). */
export interface WatchedQueue extends CountableQueue {
  /** The queue's rate-limit key: > 0 ms while every worker is paused (`worker.rateLimit`). */
  getRateLimitTtl(): Promise<number>;
}

/** How long a scrape waits for Redis (queue counts, the rate-limit key). */
const SCRAPE_READ_TIMEOUT_MS = 1_000;

export interface WorkerMetrics {
  readonly registry: Registry;
  readonly job: (outcome: JobOutcome) => void;
  readonly queueWait: (ms: number) => void;
  readonly handlerLatency: (route: string, ms: number) => void;
  readonly apiResult: (path: string, errcode: number | string) => void;
  readonly tokenRefresh: (cause: RefreshCause) => void;
  readonly inDoubtSend: (action: InDoubtAction) => void;
  readonly quotaRefusal: (kind: QuotaRefusal) => void;
  /** An access-token fetch failed. */
  readonly tokenRefreshFailed: () => void;
  /** This worker paused every worker for `ms` (a 45009/45011 rate limit). */
  readonly pausedFor: (ms: number) => void;
  /**
   * Reads `queue` at scrape time from now on: `wxrelay_queue_jobs`, `wxrelay_queue_oldest_waiting_seconds`
   * and the rate-limit key behind `wxrelay_worker_paused`. Called once per queue the worker takes jobs
   * from (each shard, QUEUE_SHARDS). Returns the function that detaches it.
   */
  readonly watchQueue: (queue: WatchedQueue) => () => void;
  /** An answer delivered by the customer-service API (one per answered message, whatever its parts). */
  readonly answeredByApi: () => void;
  /** Pending answers that expired in the inbox (passive mode). */
  readonly inboxExpired: (n: number) => void;
  /** A customer-service send answered 48001: the account has no such API. */
  readonly noCustomerServiceApi: () => void;
  /** Reads the inbox size (answers waiting) at scrape time from now on; returns the detach. */
  readonly watchInbox: (pending: () => Promise<number>) => () => void;
}

/** The worker's Prometheus metrics, on their own registry (no module-level singleton). */
export function createWorkerMetrics(opts: { defaultMetrics?: boolean } = {}): WorkerMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'wxrelay_worker_' });
  const jobs = new Counter({ name: 'wxrelay_worker_jobs_total', help: 'Inbound jobs by outcome.', labelNames: ['outcome'], registers: [registry] });
  const wait = new Histogram({
    name: 'wxrelay_worker_queue_wait_seconds',
    help: 'Time from the gateway accepting a message to a worker starting it.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'wxrelay_worker_handler_seconds',
    help: 'Handler latency (LLM included) by route.',
    labelNames: ['route'],
    buckets: [0.005, 0.05, 0.25, 1, 2.5, 5, 10, 20, 30, 60],
    registers: [registry],
  });
  const api = new Counter({ name: 'wxrelay_worker_wechat_calls_total', help: 'WeChat API calls by path and errcode.', labelNames: ['path', 'errcode'], registers: [registry] });
  const refreshes = new Counter({ name: 'wxrelay_worker_token_refreshes_total', help: 'Access-token fetches by cause.', labelNames: ['cause'], registers: [registry] });
  const inDoubt = new Counter({
    name: 'wxrelay_worker_in_doubt_sends_total',
    help: 'Parts whose earlier send had no recorded outcome (worker killed or no answer mid-send), by what was done: resent (maybe a duplicate) or skipped (maybe never delivered).',
    labelNames: ['action'],
    registers: [registry],
  });
  const quotaRefusals = new Counter({
    name: 'wxrelay_worker_quota_refusals_total',
    help: "Answers the customer-service quota did not let out whole: kind=cut (cut to fit, with a notice), kind=none (no quota left at all: the job gave up).",
    labelNames: ['kind'],
    registers: [registry],
  });
  for (const kind of QUOTA_REFUSALS) quotaRefusals.inc({ kind }, 0);
  const refreshFailures = new Counter({ name: 'wxrelay_worker_token_refresh_failures_total', help: 'Access-token fetches that failed.', registers: [registry] });

  const answers = new Counter({
    name: 'wxrelay_answers_total',
    help: 'Answers delivered, by channel: customer-service (worker: one per answered message); passive-1/passive-2/passive-3 and inbox come from the gateway',
    labelNames: ['channel'],
    registers: [registry],
  });
  answers.inc({ channel: 'customer-service' }, 0);
  const inboxExpiries = new Counter({ name: 'wxrelay_inbox_expired_total', help: 'Pending answers that expired in users\' inboxes before they were fetched (INBOX_TTL_SECONDS).', registers: [registry] });
  const noCsApi = new Counter({
    name: 'wxrelay_worker_no_customer_service_api_total',
    help: 'Customer-service sends answered 48001 (the account has no customer-service API: set REPLY_MODE=passive).',
    registers: [registry],
  });
  let inboxSize: (() => Promise<number>) | undefined;
  new Gauge({
    name: 'wxrelay_inbox_pending_answers',
    help: 'Answers waiting in users\' pending-answer inboxes (passive mode).',
    registers: [registry],
    async collect() {
      const n = inboxSize === undefined ? undefined : await readWithin(inboxSize(), SCRAPE_READ_TIMEOUT_MS);
      if (n !== undefined) this.set(n);
    },
  });

  // The queues this worker takes jobs from (one per shard), once buildWorker attaches them.
  const queueGauges = createQueueGaugeSource();
  for (const definition of queueGaugeDefinitions(queueGauges.read)) new Gauge({ ...definition, registers: [registry] });
  const watched = new Set<WatchedQueue>();
  // This process's own pause, for a scrape that cannot read the rate-limit key.
  let pausedUntil = 0;
  // One read of the keys at a time: with Redis away, scrapes do not pile commands up. A pause sets
  // every queue's key (all shards): the longest one left counts; undefined when none could be read.
  let ttlPending: Promise<number | undefined> | undefined;
  const readRateLimitTtl = (): Promise<number | undefined> => {
    ttlPending ??= Promise.all([...watched].map((q) => q.getRateLimitTtl().catch(() => undefined)))
      .then((ttls) => {
        const known = ttls.filter((t): t is number => typeof t === 'number');
        return known.length === 0 ? undefined : Math.max(...known);
      })
      .finally(() => {
        ttlPending = undefined;
      });
    return readWithin(ttlPending, SCRAPE_READ_TIMEOUT_MS);
  };
  new Gauge({
    name: 'wxrelay_worker_paused',
    help: "1 while the workers are paused by a WeChat rate limit (45009/45011): the queue's rate-limit key is set; 0 otherwise.",
    registers: [registry],
    async collect() {
      const ttl = watched.size === 0 ? undefined : await readRateLimitTtl();
      this.set(ttl === undefined ? (Date.now() < pausedUntil ? 1 : 0) : ttl > 0 ? 1 : 0);
    },
  }).set(0);

  return {
    registry,
    answeredByApi: () => answers.inc({ channel: 'customer-service' }),
    inboxExpired: (n) => {
      if (n > 0) inboxExpiries.inc(n);
    },
    noCustomerServiceApi: () => noCsApi.inc(),
    watchInbox: (pending) => {
      inboxSize = pending;
      return () => {
        if (inboxSize === pending) inboxSize = undefined;
      };
    },
    quotaRefusal: (kind) => quotaRefusals.inc({ kind }),
    tokenRefreshFailed: () => refreshFailures.inc(),
    pausedFor: (ms) => {
      pausedUntil = Math.max(pausedUntil, Date.now() + ms);
    },
    watchQueue: (queue) => {
      watched.add(queue);
      const detach = queueGauges.watch(queue, { timeoutMs: SCRAPE_READ_TIMEOUT_MS });
      return () => {
        detach();
        watched.delete(queue);
      };
    },
    inDoubtSend: (action) => inDoubt.inc({ action }),
    job: (outcome) => jobs.inc({ outcome }),
    queueWait: (ms) => wait.observe(Math.max(0, ms) / 1000),
    handlerLatency: (route, ms) => latency.observe({ route }, ms / 1000),
    apiResult: (path, errcode) => api.inc({ path, errcode: String(errcode) }),
    tokenRefresh: (cause) => refreshes.inc({ cause }),
  };
}

/** `promise`'s value, or undefined when it fails or takes longer than `ms` (a scrape never waits long, never fails). */
async function readWithin<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise.catch(() => undefined),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), ms);
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

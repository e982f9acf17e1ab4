import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RefreshCause } from './wechat/token-store.js';

/** How a job ended (a metrics label). */
export type JobOutcome = 'replied' | 'no-reply' | 'gave-up' | 'retry' | 'rate-limited' | 'waiting-turn' | 'failed' | 'answered-together';

/** What a new attempt did with a part whose send may or may not have reached WeChat. */
export type InDoubtAction = 'resent' | 'skipped';

export interface WorkerMetrics {
  readonly registry: Registry;
  readonly job: (outcome: JobOutcome) => void;
  readonly queueWait: (ms: number) => void;
  readonly handlerLatency: (route: string, ms: number) => void;
  readonly apiResult: (path: string, errcode: number | string) => void;
  readonly tokenRefresh: (cause: RefreshCause) => void;
  readonly inDoubtSend: (action: InDoubtAction) => void;
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
  return {
    registry,
    inDoubtSend: (action) => inDoubt.inc({ action }),
    job: (outcome) => jobs.inc({ outcome }),
    queueWait: (ms) => wait.observe(Math.max(0, ms) / 1000),
    handlerLatency: (route, ms) => latency.observe({ route }, ms / 1000),
    apiResult: (path, errcode) => api.inc({ path, errcode: String(errcode) }),
    tokenRefresh: (cause) => refreshes.inc({ cause }),
  };
}

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { createQueueGaugeSource, queueGaugeDefinitions, type QueueGaugeSource } from '@wxrelay/shared';

/** Why a callback ended as it did: the outcome label of {@link GatewayMetrics.callbacks}. */
export type CallbackOutcome = 'queued' | 'duplicate' | 'verified' | 'refused' | 'unavailable' | 'error';

/** Why WeChat counted a callback as failed: the answer left after 5 s, or it was a 5xx. */
export type WechatTimeoutReason = 'slow' | '5xx';
export const WECHAT_TIMEOUT_REASONS: readonly WechatTimeoutReason[] = ['slow', '5xx'];

export interface GatewayMetrics {
  readonly registry: Registry;
  /** Callbacks by mode (plain/compat/safe/verify/unknown) and outcome. */
  readonly callbacks: Counter<'mode' | 'outcome'>;
  /** Time from request start to the answer, by outcome. */
  readonly ackSeconds: Histogram<'outcome'>;
  /** Time Redis took to take a job. */
  readonly enqueueSeconds: Histogram;
  /** WeChat re-deliveries of a message already queued (by any gateway instance). */
  readonly dedupHits: Counter;
  /** Callbacks WeChat's own 「开发者5秒内没有返回」 alarm counts (answered after 5 s, or 5xx). */
  readonly wechatTimeouts: Counter<'reason'>;
  /** Where `wxrelay_queue_jobs` and `wxrelay_queue_oldest_waiting_seconds` read (the app attaches its queue). */
  readonly queueGauges: QueueGaugeSource;
}

const FAST_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** The gateway's metrics, in a registry of their own (so tests and apps never share counters). */
export function createGatewayMetrics(registry: Registry = new Registry()): GatewayMetrics {
  collectDefaultMetrics({ register: registry, prefix: 'wxrelay_gateway_' });
  const wechatTimeouts = new Counter({
    name: 'wxrelay_gateway_wechat_timeouts_total',
    help: 'Callbacks WeChat counts as failed (its 5-second alarm): reason=slow answered more than 5 s after the request arrived, reason=5xx answered with a 5xx',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of WECHAT_TIMEOUT_REASONS) wechatTimeouts.inc({ reason }, 0);
  const queueGauges = createQueueGaugeSource();
  for (const definition of queueGaugeDefinitions(queueGauges.read)) new Gauge({ ...definition, registers: [registry] });
  return {
    wechatTimeouts,
    queueGauges,
    registry,
    callbacks: new Counter({
      name: 'wxrelay_gateway_callbacks_total',
      help: 'WeChat callbacks by mode and outcome',
      labelNames: ['mode', 'outcome'],
      registers: [registry],
    }),
    ackSeconds: new Histogram({
      name: 'wxrelay_gateway_ack_seconds',
      help: 'Time from receiving a callback to answering it',
      labelNames: ['outcome'],
      buckets: FAST_BUCKETS,
      registers: [registry],
    }),
    enqueueSeconds: new Histogram({
      name: 'wxrelay_gateway_enqueue_seconds',
      help: 'Time for Redis to take a job',
      buckets: FAST_BUCKETS,
      registers: [registry],
    }),
    dedupHits: new Counter({
      name: 'wxrelay_gateway_dedup_hits_total',
      help: 'Re-deliveries of a message Redis already held (queued by this or another gateway instance)',
      registers: [registry],
    }),
  };
}

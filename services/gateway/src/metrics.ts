import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Why a callback ended as it did: the outcome label of {@link GatewayMetrics.callbacks}. */
export type CallbackOutcome = 'queued' | 'duplicate' | 'verified' | 'refused' | 'unavailable' | 'error';

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
}

const FAST_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** The gateway's metrics, in a registry of their own (so tests and apps never share counters). */
export function createGatewayMetrics(registry: Registry = new Registry()): GatewayMetrics {
  collectDefaultMetrics({ register: registry, prefix: 'wxrelay_gateway_' });
  return {
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

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
  /** Callbacks answered 503 because fewer than REDIS_ACK_REPLICAS replicas confirmed them in time. */
  readonly ackReplicaShortfalls: Counter;
  /** Callbacks WeChat's own 「开发者5秒内没有返回」 alarm counts (answered after 5 s, or 5xx). */
  readonly wechatTimeouts: Counter<'reason'>;
  /** Passive answers delivered, by channel: `passive-1`/`passive-2`/`passive-3` (WeChat's attempt) or `inbox`. */
  readonly answers: Counter<'channel'>;
  /** Placeholders answered: the last attempt came before the answer (which then waits in the inbox). */
  readonly placeholders: Counter;
  /** Callbacks held open for an answer right now. */
  readonly heldRequests: Gauge;
  /** How long a callback was held, by how it ended. */
  readonly holdSeconds: Histogram<'result'>;
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
    answers: new Counter({
      name: 'wxrelay_answers_total',
      help: 'Answers delivered, by channel: passive-1/passive-2/passive-3 (in the HTTP answer to WeChat\'s attempt), inbox (a pending answer fetched by the user\'s next message; gateway), customer-service (worker)',
      labelNames: ['channel'],
      registers: [registry],
    }),
    placeholders: new Counter({
      name: 'wxrelay_gateway_placeholders_total',
      help: 'Placeholders answered (passive mode): WeChat\'s last attempt came before the answer, which then waits in the user\'s inbox; also the answer to a message that asks for one still being computed',
      registers: [registry],
    }),
    heldRequests: new Gauge({
      name: 'wxrelay_gateway_held_requests',
      help: 'Callbacks held open for an answer right now (passive and auto modes)',
      registers: [registry],
    }),
    holdSeconds: new Histogram({
      name: 'wxrelay_gateway_hold_seconds',
      help: 'How long a callback was held for its answer, by result: answer, placeholder, closed (auto: left to the customer-service API), lapsed (not ready: WeChat retries), acked (delivered before or elsewhere), error',
      labelNames: ['result'],
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 4.5, 5, 5.5],
      registers: [registry],
    }),
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
    ackReplicaShortfalls: new Counter({
      name: 'wxrelay_gateway_ack_replica_shortfalls_total',
      help: 'Callbacks answered 503 because fewer than REDIS_ACK_REPLICAS replicas confirmed them (WAIT) within ENQUEUE_TIMEOUT_MS (also counted in wxrelay_gateway_callbacks_total as outcome=unavailable)',
      registers: [registry],
    }),
    dedupHits: new Counter({
      name: 'wxrelay_gateway_dedup_hits_total',
      help: 'Re-deliveries of a message Redis already held (queued by this or another gateway instance)',
      registers: [registry],
    }),
  };
}

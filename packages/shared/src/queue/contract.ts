import Type, { type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { envDefault } from '../config.js';
import { dedupKey, jobIdFor } from '../protocol/dedup.js';
import type { InboundMessage } from '../protocol/messages.js';

/**
 * The queue contract between the gateway (producer) and the workers (consumer). Both import it
 * from here; nothing else names a queue or shapes a payload. No BullMQ here: this part is also
 * exported by the package root, which must not load bullmq.
 *
 * Rolling deploys: payloads carry `v`, hold no secrets, and grow only by optional fields.
 */

/** The BullMQ queue every inbound WeChat callback goes to. */
export const INBOUND_QUEUE = 'wx-inbound';

/** Job names on {@link INBOUND_QUEUE}. A job name without a handler fails to compile in the worker. */
export const JOB_NAMES = {
  /** A user message or event from a WeChat callback. */
  inbound: 'inbound',
} as const;
export type JobName = (typeof JOB_NAMES)[keyof typeof JOB_NAMES];

/** How the callback reached the gateway (WeChat's 明文 / 兼容 / 安全 modes). */
export type CallbackMode = 'plain' | 'compat' | 'safe';

/**
 * How long a message's dedup id outlives its arrival. WeChat retries for ~15–20 s (up to 4
 * deliveries, docs/wechat-protocol.md §3.3); the SDKs that keep 10–60 s drop into the gap when
 * a gateway is slow. Ten minutes is far past any retry and costs one small key per message.
 */
export const DEDUP_TTL_MS = 10 * 60 * 1000;

/** Version 1 of the inbound job payload. */
export const InboundJobV1 = Type.Object(
  {
    v: Type.Literal(1),
    /** Dedup key of the message (MsgId or FromUserName|CreateTime|Event|EventKey). */
    dedupKey: Type.String({ minLength: 1 }),
    /** The callback mode it arrived in. */
    mode: Type.Union([Type.Literal('plain'), Type.Literal('compat'), Type.Literal('safe')]),
    /** Unix ms at which the gateway accepted it (queue wait = start − receivedAt). */
    receivedAt: Type.Integer({ minimum: 0 }),
    /** The parsed message (an `InboundMessage` of the protocol core). */
    message: Type.Object(
      {
        kind: Type.String(),
        toUserName: Type.String(),
        fromUserName: Type.String(),
        createTime: Type.Integer(),
      },
      { additionalProperties: true },
    ),
  },
  { additionalProperties: true },
);

export type InboundJobPayload = Omit<Static<typeof InboundJobV1>, 'message'> & {
  message: InboundMessage;
};

const inboundValidator = Compile(InboundJobV1);

/** An inbound job as the producer adds it: its id (which is also its dedup id) and its payload. */
export interface InboundJob {
  readonly jobId: string;
  readonly payload: InboundJobPayload;
}

/**
 * The job for a message the gateway accepted: the id WeChat's retries of it share
 * (docs/wechat-protocol.md §3.3) and the v1 payload.
 */
export function toInboundJob(message: InboundMessage, mode: CallbackMode, receivedAt: number): InboundJob {
  return { jobId: jobIdFor(message), payload: { v: 1, dedupKey: dedupKey(message), mode, receivedAt, message } };
}

/** True when `data` is a v1 inbound payload (the worker checks before it trusts a job). */
export function isInboundJobPayload(data: unknown): data is InboundJobPayload {
  return inboundValidator.Check(data);
}

/** The attempt budget every inbound job carries (set by the producer). */
export const DEFAULT_JOB_OPTIONS = {
  /** Transient failures (network, -1, 5xx) are retried with exponential backoff. */
  attempts: 6,
  backoff: { type: 'exponential', delay: 1_000 },
} as const;

/**
 * How long finished jobs are kept, applied by the consumer (BullMQ Worker options) rather than
 * carried by every job: options travel with each job, and encoding them is paid on every enqueue.
 */
export const JOB_RETENTION = {
  /**
   * Completed jobs are kept a while for inspection; dedup does not depend on them (the
   * `deduplication` key with {@link DEDUP_TTL_MS} covers WeChat's retry window).
   */
  removeOnComplete: { age: 3_600, count: 100_000 },
  /** Failed jobs are dead letters: kept a week with their reason. */
  removeOnFail: { age: 7 * 24 * 3_600 },
} as const;

/**
 * How many entries BullMQ keeps in the queue's event stream (approximately): the one link between
 * the producer and the workers' per-user order, stated here only.
 *
 * - The workers keep each user's reply order by reading the `added` entries of this stream (the
 *   turns script, queue/turns.ts); when a burst outruns the cap they fall back to a slower scan.
 * - So the producer sets it (BullMQ's `streams.events.maxLen`, written once into the queue's meta
 *   when its `Queue` starts) **and restores it** on every batch when Redis lost the meta (flushed,
 *   or a replica promoted empty): BullMQ would quietly fall back to its default (queue/producer.ts).
 *
 * BullMQ's default (10,000) is two seconds of a 5 k msg/s burst; ten times that is still a small,
 * bounded share of Redis memory (bench/analysis.md).
 */
export const INBOUND_EVENTS_MAX_LEN = 100_000;

/** Redis key prefix for BullMQ (`<prefix>:<queue>:…`): QUEUE_PREFIX's default, declared once in the config table. */
export const DEFAULT_QUEUE_PREFIX: string = envDefault('QUEUE_PREFIX');

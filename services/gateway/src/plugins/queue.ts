import fp from 'fastify-plugin';
import { Queue } from 'bullmq';
import {
  DEDUP_TTL_MS,
  DEFAULT_JOB_OPTIONS,
  INBOUND_EVENTS_MAX_LEN,
  INBOUND_QUEUE,
  JOB_NAMES,
  WxError,
  type InboundJobPayload,
} from '@wxrelay/shared';
import { createQueueAdder } from './bulk-add.js';

/**
 * Callbacks sent to Redis in one command at most. Small enough that Redis runs one batch while the
 * gateway parses the next (one large batch leaves the gateway idle while Redis works), large
 * enough that the per-command cost is shared. bench/analysis.md has the numbers.
 */
export const MAX_BATCH = 16;

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Puts one callback on the inbound queue under `jobId`. Resolves only once Redis holds the
     * job — with true when it already held it (a re-delivery: the add was a no-op), false when this
     * call added it; rejects with WX_ERR_ENQUEUE when Redis cannot take it within the budget.
     */
    enqueue(jobId: string, payload: InboundJobPayload): Promise<boolean>;
    /** True when a message with this job id was queued within the dedup window (any instance). */
    isQueued(jobId: string): Promise<boolean>;
    inboundQueue: Queue;
  }
}

interface PendingEnqueue {
  readonly jobId: string;
  readonly payload: InboundJobPayload;
  resolve(alreadyHeld: boolean): void;
  reject(err: unknown): void;
}

export interface QueuePluginOptions {
  readonly prefix: string;
  readonly queueName?: string;
  readonly timeoutMs: number;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WxError('WX_ERR_ENQUEUE', `redis did not take the job within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const queuePlugin = fp<QueuePluginOptions>(
  (app, opts, done) => {
    const { prefix } = opts;
    const queue = new Queue(opts.queueName ?? INBOUND_QUEUE, {
      connection: app.redis,
      prefix,
      defaultJobOptions: DEFAULT_JOB_OPTIONS,
      streams: { events: { maxLen: INBOUND_EVENTS_MAX_LEN } },
    });
    queue.on('error', (err) => app.log.error({ err }, 'queue error'));

    const adder = createQueueAdder(queue, app.redis, {
      name: JOB_NAMES.inbound,
      jobOptions: DEFAULT_JOB_OPTIONS,
      dedupTtlMs: DEDUP_TTL_MS,
      eventsMaxLen: INBOUND_EVENTS_MAX_LEN,
    });
    if (adder.via !== 'script') app.log.warn({ reason: adder.reason }, 'one-command enqueue unavailable for this bullmq; using Queue.addBulk');

    /**
     * Enqueues are batched: every callback parsed in one event-loop turn (up to {@link MAX_BATCH})
     * goes to Redis in one command (BullMQ's add script run once per job, see bulk-add.ts) instead
     * of one write each. Under a burst this is where the gateway's time goes (building and writing
     * Redis commands); when idle a batch is one callback and adds no delay beyond a setImmediate.
     * The cap keeps a burst from holding every ack until the whole burst is in Redis, and lets
     * Redis work on one batch while the gateway parses the next.
     *
     * Exactly-once rests on BullMQ's atomic add: the job id, plus a deduplication key that
     * outlives WeChat's retry window ({@link DEDUP_TTL_MS}) even when the completed job is gone.
     */
    let pending: PendingEnqueue[] = [];
    let scheduled = false;
    const flush = (): void => {
      scheduled = false;
      if (pending.length === 0) return;
      const batch = pending;
      pending = [];
      // One deadline per batch: it is one command with one answer. A batch that fails or times out
      // may still have landed in part; WeChat's retry of it is then deduplicated.
      let settled = false;
      const fail = (err: WxError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        for (const p of batch) p.reject(err);
      };
      const timer = setTimeout(() => {
        fail(new WxError('WX_ERR_ENQUEUE', `redis did not take the job within ${opts.timeoutMs} ms`));
      }, opts.timeoutMs);
      adder.add(batch.map((p) => ({ jobId: p.jobId, data: p.payload }))).then(
        (held) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          for (let i = 0; i < batch.length; i++) batch[i]!.resolve(held[i] === true);
        },
        (err: unknown) => fail(new WxError('WX_ERR_ENQUEUE', 'redis did not take the job', { cause: err })),
      );
    };
    const add = (jobId: string, payload: InboundJobPayload): Promise<boolean> =>
      new Promise((resolve, reject) => {
        pending.push({ jobId, payload, resolve, reject });
        if (pending.length >= MAX_BATCH) flush();
        else if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });

    app.decorate('isQueued', async (jobId: string) => {
      try {
        return (await withTimeout(app.redis.exists(queue.toKey(`de:${jobId}`)), opts.timeoutMs)) === 1;
      } catch (err) {
        // Without Redis we cannot tell a retry from a replay: 503, so WeChat tries again later.
        if (err instanceof WxError) throw err;
        throw new WxError('WX_ERR_ENQUEUE', 'redis did not answer the dedup lookup', { cause: err });
      }
    });
    app.decorate('inboundQueue', queue);
    app.decorate('enqueue', add);
    app.addHook('onClose', async () => {
      await queue.close();
    });
    done();
  },
  { name: 'wxrelay-queue', dependencies: ['wxrelay-redis'], fastify: '5.x' },
);

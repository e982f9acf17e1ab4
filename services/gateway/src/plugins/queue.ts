import fp from 'fastify-plugin';
import { Queue } from 'bullmq';
import {
  DEDUP_TTL_MS,
  DEFAULT_JOB_OPTIONS,
  INBOUND_QUEUE,
  JOB_NAMES,
  WxError,
  type InboundJobPayload,
} from '@wxrelay/shared';

export type EnqueueOutcome = 'queued' | 'duplicate';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Puts one callback on the inbound queue under `jobId`. Resolves only once Redis holds the
     * job (or already held it: `duplicate`); rejects with WX_ERR_ENQUEUE when Redis cannot take
     * it within the budget.
     */
    enqueue(jobId: string, payload: InboundJobPayload): Promise<EnqueueOutcome>;
    inboundQueue: Queue;
  }
}

interface PendingEnqueue {
  readonly jobId: string;
  readonly payload: InboundJobPayload;
  resolve(outcome: EnqueueOutcome): void;
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
    });
    queue.on('error', (err) => app.log.error({ err }, 'queue error'));
    const seenPrefix = `${prefix}:seen:`;

    /**
     * Enqueues are batched per event-loop turn: every callback parsed in one turn goes to Redis in
     * two pipelined writes (the dedup markers, and BullMQ's bulk add) instead of two writes each.
     * Under a burst this is where the gateway's time goes (socket writes), so it matters; when
     * idle a batch is one callback and adds no delay beyond a setImmediate.
     */
    let pending: PendingEnqueue[] = [];
    let scheduled = false;
    const flush = (): void => {
      scheduled = false;
      const batch = pending;
      pending = [];
      // The markers only count dedup hits (and let a stale-timestamp retry be recognised);
      // exactly-once rests on BullMQ's atomic add: the job id, plus a deduplication key that
      // outlives WeChat's retry window even when the completed job is gone.
      const markers = app.redis.pipeline();
      for (const p of batch) markers.set(seenPrefix + p.jobId, '1', 'PX', DEDUP_TTL_MS, 'NX');
      Promise.all([
        markers.exec(),
        queue.addBulk(
          batch.map((p) => ({
            name: JOB_NAMES.inbound,
            data: p.payload,
            opts: { jobId: p.jobId, deduplication: { id: p.jobId, ttl: DEDUP_TTL_MS } },
          })),
        ),
      ]).then(
        ([seen]) => {
          batch.forEach((p, i) => {
            const [err, result] = seen?.[i] ?? [null, 'OK'];
            p.resolve(err === null && result === null ? 'duplicate' : 'queued');
          });
        },
        (err: unknown) => {
          for (const p of batch) p.reject(err);
        },
      );
    };
    const add = (jobId: string, payload: InboundJobPayload): Promise<EnqueueOutcome> =>
      new Promise((resolve, reject) => {
        pending.push({ jobId, payload, resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });

    app.decorate('inboundQueue', queue);
    app.decorate('enqueue', async (jobId: string, payload: InboundJobPayload) => {
      try {
        return await withTimeout(add(jobId, payload), opts.timeoutMs);
      } catch (err) {
        if (err instanceof WxError) throw err;
        throw new WxError('WX_ERR_ENQUEUE', 'redis did not take the job', { cause: err });
      }
    });
    app.addHook('onClose', async () => {
      await queue.close();
    });
    done();
  },
  { name: 'wxrelay-queue', dependencies: ['wxrelay-redis'], fastify: '5.x' },
);

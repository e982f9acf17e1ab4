import fp from 'fastify-plugin';
import type { Queue } from 'bullmq';
import { createInboundProducer, type InboundJobPayload, type ProducerPath } from '@wxrelay/shared/queue';

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
    /** How jobs reach Redis: `script` (one command per batch) or `addBulk` (the fallback). */
    enqueuePath: ProducerPath;
  }
}

export interface QueuePluginOptions {
  readonly prefix: string;
  readonly queueName?: string;
  readonly timeoutMs: number;
  /** `addBulk` forces the producer's fallback path (tests run the suite on both). */
  readonly producerPath?: ProducerPath;
  /** REDIS_ACK_REPLICAS: replicas that must confirm a batch (WAIT) before its callbacks are acked; 0 = off. */
  readonly ackReplicas?: number;
}

/**
 * The inbound queue's producer (`@wxrelay/shared/queue`, the door to BullMQ) as fastify
 * decorators. Building it runs the startup check of BullMQ's internals; when the check does not
 * recognise the installed bullmq, the producer uses `Queue.addBulk` and this logs why.
 */
export const queuePlugin = fp<QueuePluginOptions>(
  (app, opts, done) => {
    const producer = createInboundProducer({
      redis: app.redis,
      prefix: opts.prefix,
      timeoutMs: opts.timeoutMs,
      ...(opts.queueName === undefined ? {} : { queueName: opts.queueName }),
      ...(opts.producerPath === undefined ? {} : { path: opts.producerPath }),
      ...(opts.ackReplicas === undefined ? {} : { ackReplicas: opts.ackReplicas, onReplicaShortfall: (n: number) => app.metrics.ackReplicaShortfalls.inc(n) }),
    });
    producer.queue.on('error', (err) => app.log.error({ err }, 'queue error'));
    if ((opts.ackReplicas ?? 0) > 0) {
      app.log.info({ ackReplicas: opts.ackReplicas, budgetMs: opts.timeoutMs }, `acks wait for ${opts.ackReplicas} replica(s) to confirm each message (WAIT) within ENQUEUE_TIMEOUT_MS; otherwise 503`);
    }
    if (producer.via !== 'script') app.log.warn({ reason: producer.reason }, 'one-command enqueue unavailable for this bullmq; using Queue.addBulk');

    app.decorate('isQueued', producer.isQueued);
    app.decorate('inboundQueue', producer.queue);
    app.decorate('enqueuePath', producer.via);
    app.decorate('enqueue', producer.enqueue);
    app.addHook('onClose', async () => {
      await producer.close();
    });
    done();
  },
  { name: 'wxrelay-queue', dependencies: ['wxrelay-redis'], fastify: '5.x' },
);

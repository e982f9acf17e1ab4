import fp from 'fastify-plugin';
import type { Queue } from 'bullmq';
import { createShardedProducer, type InboundJobPayload, type Placement, type ProducerPath, type QueueLayouts, type QueueShard } from '@wxrelay/shared/queue';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Puts one callback on its user's queue under `jobId`. Resolves only once Redis holds the
     * job — with true when it already held it (a re-delivery: the add was a no-op), false when this
     * call added it; rejects with WX_ERR_ENQUEUE when Redis cannot take it within the budget.
     */
    enqueue(jobId: string, payload: InboundJobPayload): Promise<boolean>;
    /** The same, saying which queue holds the message (with QUEUE_SHARDS_ALSO, either layout's). */
    place(jobId: string, payload: InboundJobPayload): Promise<Placement>;
    /** True when a message of `openid` with this job id was queued within the dedup window (any instance). */
    isQueued(jobId: string, openid: string): Promise<boolean>;
    /** The first queue (shard 0 of QUEUE_SHARDS; the only one by default). */
    inboundQueue: Queue;
    /**
     * Every queue in use (dashboard, gauges): the current layout's, then, while QUEUE_SHARDS changes,
     * the other layout's, each with its {@link QueueShard}.
     */
    inboundQueues: readonly { readonly queue: Queue; readonly shard: QueueShard }[];
    /** QUEUE_SHARDS's layout(s) of the inbound queue. */
    queueLayouts: QueueLayouts;
    /** How jobs reach Redis: `script` (one command per batch) or `addBulk` (the fallback). */
    enqueuePath: ProducerPath;
  }
}

export interface QueuePluginOptions {
  readonly prefix: string;
  /** QUEUE_SHARDS and QUEUE_SHARDS_ALSO (default one queue). */
  readonly shards?: { readonly count: number; readonly also?: number };
  readonly queueName?: string;
  readonly timeoutMs: number;
  /** `addBulk` forces the producer's fallback path (tests run the suite on both). */
  readonly producerPath?: ProducerPath;
  /** REDIS_ACK_REPLICAS: replicas that must confirm a batch (WAIT) before its callbacks are acked; 0 = off. */
  readonly ackReplicas?: number;
}

/**
 * The inbound queue's producers (`@wxrelay/shared/queue`, the door to BullMQ: one per shard,
 * a message routed by its openid) as fastify decorators. Building them runs the startup check of
 * BullMQ's internals; when the check does not recognise the installed bullmq, the producers use
 * `Queue.addBulk` and this logs why.
 */
export const queuePlugin = fp<QueuePluginOptions>(
  (app, opts, done) => {
    const producer = createShardedProducer({
      redis: app.redis,
      prefix: opts.prefix,
      shards: opts.shards ?? { count: 1 },
      timeoutMs: opts.timeoutMs,
      ...(opts.queueName === undefined ? {} : { queueName: opts.queueName }),
      ...(opts.producerPath === undefined ? {} : { path: opts.producerPath }),
      ...(opts.ackReplicas === undefined ? {} : { ackReplicas: opts.ackReplicas, onReplicaShortfall: (n: number) => app.metrics.ackReplicaShortfalls.inc(n) }),
    });
    for (const p of producer.all) p.queue.on('error', (err) => app.log.error({ err }, 'queue error'));
    if ((opts.ackReplicas ?? 0) > 0) {
      app.log.info({ ackReplicas: opts.ackReplicas, budgetMs: opts.timeoutMs }, `acks wait for ${opts.ackReplicas} replica(s) to confirm each message (WAIT) within ENQUEUE_TIMEOUT_MS; otherwise 503`);
    }
    if (producer.via !== 'script') app.log.warn({ reason: producer.reason }, 'one-command enqueue unavailable for this bullmq; using Queue.addBulk');
    const { layouts } = producer;
    if (layouts.all.length > 1) app.log.info({ queues: layouts.current.queues.map((q) => q.name), also: layouts.also?.queues.map((q) => q.name) }, 'sharded inbound queue');

    app.decorate('place', producer.place);
    app.decorate('enqueue', async (jobId: string, payload: InboundJobPayload) => (await producer.place(jobId, payload)).held);
    app.decorate('isQueued', producer.isQueued);
    app.decorate('inboundQueue', producer.producers[0]!.queue);
    app.decorate('inboundQueues', producer.all.map((p, i) => ({ queue: p.queue, shard: layouts.all[i]! })));
    app.decorate('queueLayouts', layouts);
    app.decorate('enqueuePath', producer.via);
    app.addHook('onClose', async () => {
      await producer.close();
    });
    done();
  },
  { name: 'wxrelay-queue', dependencies: ['wxrelay-redis'], fastify: '5.x' },
);

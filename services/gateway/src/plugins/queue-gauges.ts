import fp from 'fastify-plugin';

export interface QueueGaugesOptions {
  /** How long a scrape waits for Redis to count the queue (default 1 s). */
  readonly timeoutMs?: number;
}

/**
 * Points `wxrelay_queue_jobs{queue,state}` and `wxrelay_queue_oldest_waiting_seconds{queue}` (in
 * the gateway's registry from the start) at the inbound queue, one series set per queue in use
 * (each shard of QUEUE_SHARDS, `queue` = its name; `wx-inbound` with one): read at scrape time,
 * O(1) in Redis, bounded by a timeout; with Redis away a scrape keeps the last values. Detached on close.
 */
export const queueGaugesPlugin = fp<QueueGaugesOptions>(
  (app, opts, done) => {
    const detachAll = app.inboundQueues.map(({ queue, shard }) =>
      app.metrics.queueGauges.watch(
        { name: shard.name, getJobCounts: (...types) => queue.getJobCounts(...types), getWaiting: (start, end) => queue.getWaiting(start, end) },
        opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs },
      ),
    );
    app.addHook('onClose', (_app, next) => {
      for (const detach of detachAll) detach();
      next();
    });
    done();
  },
  { name: 'wxrelay-queue-gauges', dependencies: ['wxrelay-queue'], fastify: '5.x' },
);

import fp from 'fastify-plugin';

export interface QueueGaugesOptions {
  /** How long a scrape waits for Redis to count the queue (default 1 s). */
  readonly timeoutMs?: number;
}

/**
 * Points `wxrelay_queue_jobs{queue,state}` and `wxrelay_queue_oldest_waiting_seconds{queue}` (in
 * the gateway's registry from the start) at the inbound queue: read at scrape time, O(1) in Redis,
 * bounded by a timeout; with Redis away a scrape keeps the last values. Detached on close.
 */
export const queueGaugesPlugin = fp<QueueGaugesOptions>(
  (app, opts, done) => {
    const detach = app.metrics.queueGauges.watch(app.inboundQueue, opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs });
    app.addHook('onClose', (_app, next) => {
      detach();
      next();
    });
    done();
  },
  { name: 'wxrelay-queue-gauges', dependencies: ['wxrelay-queue'], fastify: '5.x' },
);

import { createRedisBackend, type BackendFactory, type RedisQueueBackend } from 'bullmq';

/**
 * Commands that ride along with BullMQ's completion of a job: sent on the worker's connection just
 * before BullMQ's `moveToFinished`, with no reply awaited in between, so they cost no round trip of
 * their own. The worker releases a user's turn this way once the job's answer is out (the release
 * must come after the last send, and the completion is the next command BullMQ sends anyway).
 *
 * How: the worker is built with {@link CompletionRides.backendFactory}, BullMQ's own Redis backend
 * (`createRedisBackend`, BullMQ's public extension point) whose `moveToCompleted` first sends the
 * rides registered for that job ({@link CompletionRides.ride}), then BullMQ's completion as usual.
 * Should a bullmq ever complete a job without going through `moveToCompleted`, the rides still go
 * out when the worker emits `completed` (one round trip each, and a warning once): see
 * {@link CompletionRides.attach}.
 */
export interface CompletionRides {
  /** BullMQ's Redis backend, completing jobs with their rides. */
  readonly backendFactory: BackendFactory<RedisQueueBackend>;
  /**
   * Sends `send()` (which must write its command at once, without awaiting anything before) along
   * with the completion of `job` (the Job object the processor was handed), at most once. `send`
   * handles its own failure: the job is complete whatever happens to it.
   */
  readonly ride: (job: object, send: () => Promise<unknown>) => void;
  /** Flushes a ride BullMQ's completion did not carry, when `worker` emits `completed`. */
  attach(worker: { on(event: 'completed', listener: (job: object) => void): unknown }, onMissed?: () => void): void;
}

export function createCompletionRides(): CompletionRides {
  const rides = new WeakMap<object, () => Promise<unknown>>();
  const take = (job: object): (() => Promise<unknown>) | undefined => {
    const send = rides.get(job);
    rides.delete(job);
    return send;
  };
  const backendFactory: BackendFactory<RedisQueueBackend> = (name, opts, options) => {
    const backend = createRedisBackend(name, opts, options);
    const complete = backend.moveToCompleted.bind(backend);
    backend.moveToCompleted = async (job, ...rest) => {
      const sent = take(job)?.();
      try {
        return await complete(job, ...rest);
      } finally {
        await sent?.catch(() => undefined);
      }
    };
    return backend;
  };
  return {
    backendFactory,
    ride: (job, send) => {
      rides.set(job, send);
    },
    attach(worker, onMissed) {
      let warned = false;
      worker.on('completed', (job) => {
        const send = take(job);
        if (send === undefined) return;
        if (!warned) {
          warned = true;
          onMissed?.();
        }
        void send().catch(() => undefined);
      });
    },
  };
}

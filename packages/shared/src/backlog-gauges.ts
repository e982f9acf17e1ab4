/**
 * The queue's backlog as Prometheus gauges, read at scrape time: `wxrelay_queue_jobs{queue,state}`
 * and `wxrelay_queue_oldest_waiting_seconds{queue}`. Both services export them (the gateway from its
 * producer queue, the worker from a Queue on its own connection); a dashboard takes the max.
 *
 * No bullmq import: the queue is typed by the two public methods used, and the gauges by the one
 * method their `collect` calls, so each service passes these definitions to its own prom-client.
 *
 * @module
 */

/** The BullMQ states `wxrelay_queue_jobs` reports, one series each. */
export const QUEUE_JOB_STATES = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized'] as const;
export type QueueJobState = (typeof QUEUE_JOB_STATES)[number];

/** What the gauges read of a BullMQ `Queue`: two of its public methods, each O(1) in Redis. */
export interface CountableQueue {
  readonly name: string;
  /** One LLEN/ZCARD per state. */
  getJobCounts(...types: QueueJobState[]): Promise<Record<string, number>>;
  /**
   * `getWaiting(0, 0)` is the oldest waiting job: BullMQ LPUSHes new jobs onto the wait list and
   * workers take from its tail, and `getWaiting` reads in ascending order (from the tail), so this
   * is one `LRANGE wait -1 -1` and one HGETALL. (`getWaiting(-1, -1)` would be the newest.)
   */
  getWaiting(start?: number, end?: number): Promise<readonly ({ readonly timestamp: number } | undefined)[]>;
}

/** One reading of a queue. */
export interface QueueSnapshot {
  readonly queue: string;
  readonly counts: Readonly<Record<QueueJobState, number>>;
  /** Age of the oldest waiting job (from its BullMQ `timestamp`, when it was added); 0 when none waits. */
  readonly oldestWaitingSeconds: number;
}

/** Reads a snapshot; undefined when Redis did not answer in time or failed. Never rejects. */
export type ReadQueueSnapshot = () => Promise<QueueSnapshot | undefined>;

export interface QueueSnapshotOptions {
  /** How long a scrape waits for Redis (default 1 s); the read is not repeated while one is pending. */
  readonly timeoutMs?: number;
  /** Clock in Unix ms (the job timestamps are Unix ms). */
  readonly now?: () => number;
}

/**
 * Reads `queue` for the gauges: the counts, then the oldest waiting job. Single-flight: callers
 * that come while a read is pending share it (both gauges of one scrape, or a scrape that comes
 * while Redis still has not answered the last one), so a Redis outage never piles reads up.
 */
export function queueSnapshots(queue: CountableQueue, opts: QueueSnapshotOptions = {}): ReadQueueSnapshot {
  const timeoutMs = opts.timeoutMs ?? 1_000;
  const now = opts.now ?? Date.now;
  let pending: Promise<QueueSnapshot | undefined> | undefined;

  const read = async (): Promise<QueueSnapshot | undefined> => {
    try {
      const raw = await queue.getJobCounts(...QUEUE_JOB_STATES);
      const counts = Object.fromEntries(QUEUE_JOB_STATES.map((s) => [s, Number(raw[s] ?? 0)])) as Record<QueueJobState, number>;
      let oldestWaitingSeconds = 0;
      if (counts.waiting > 0) {
        const [oldest] = await queue.getWaiting(0, 0);
        if (oldest !== undefined && Number.isFinite(oldest.timestamp)) oldestWaitingSeconds = Math.max(0, (now() - oldest.timestamp) / 1000);
      }
      return { queue: queue.name, counts, oldestWaitingSeconds };
    } catch {
      return undefined;
    }
  };

  return async () => {
    pending ??= read().finally(() => {
      pending = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
      timer.unref();
    });
    try {
      return await Promise.race([pending, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  };
}

/** The one method of a prom-client Gauge the collectors call. */
export interface SettableGauge {
  set(labels: { queue: string; state?: string }, value: number): void;
}

/** A gauge definition for prom-client's `new Gauge({ ...definition, registers })`. */
export interface QueueGaugeDefinition<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  collect(this: SettableGauge): Promise<void>;
}

/** What the gauges read at scrape time: one queue's snapshot, several (a sharded queue), or nothing. */
export type ReadGaugeSnapshots = () => Promise<QueueSnapshot | readonly (QueueSnapshot | undefined)[] | undefined>;

/**
 * The two backlog gauges, one series set per queue (QUEUE_SHARDS: one per shard, `queue` = its
 * name), reading whatever `read` returns at scrape time (the service sets the queues once it has
 * them). A queue whose read gives nothing (none yet, Redis down or slow) keeps its last values: a
 * failing collector never fails the scrape.
 */
export function queueGaugeDefinitions(read: ReadGaugeSnapshots): [QueueGaugeDefinition<'queue' | 'state'>, QueueGaugeDefinition<'queue'>] {
  const snapshots = async (): Promise<QueueSnapshot[]> => {
    try {
      const got = await read();
      if (got === undefined) return [];
      return (Array.isArray(got) ? got : [got]).filter((s): s is QueueSnapshot => s !== undefined);
    } catch {
      return [];
    }
  };
  return [
    {
      name: 'wxrelay_queue_jobs',
      help: 'Jobs in the inbound queue by BullMQ state, per queue (one per shard with QUEUE_SHARDS; read at scrape time: LLEN/ZCARD).',
      labelNames: ['queue', 'state'],
      async collect() {
        for (const s of await snapshots()) for (const state of QUEUE_JOB_STATES) this.set({ queue: s.queue, state }, s.counts[state]);
      },
    },
    {
      name: 'wxrelay_queue_oldest_waiting_seconds',
      help: 'Age of the oldest waiting job of the queue (0 when none waits): how far behind the workers are.',
      labelNames: ['queue'],
      async collect() {
        for (const s of await snapshots()) this.set({ queue: s.queue }, s.oldestWaitingSeconds);
      },
    },
  ];
}

/**
 * A settable source for {@link queueGaugeDefinitions}: the metrics are created first (so the names
 * are in the exposition from the start), the queues are attached once the service has them (each
 * shard of a sharded queue is one).
 */
export interface QueueGaugeSource {
  /** A snapshot per watched queue (undefined for one that did not answer in time); none watched: `[]`. */
  readonly read: () => Promise<readonly (QueueSnapshot | undefined)[]>;
  /** Reads `queue` too from now on; the returned function detaches it (e.g. when it closes). */
  watch(queue: CountableQueue, opts?: QueueSnapshotOptions): () => void;
}

export function createQueueGaugeSource(): QueueGaugeSource {
  const readers = new Set<ReadQueueSnapshot>();
  return {
    read: () => Promise.all([...readers].map((r) => r())),
    watch(queue, opts) {
      const reader = queueSnapshots(queue, opts);
      readers.add(reader);
      return () => {
        readers.delete(reader);
      };
    },
  };
}

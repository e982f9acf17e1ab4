import type { Queue } from 'bullmq';
import type { RedisClient } from '../redis-connection.js';
import { WxError } from '../errors.js';
import { queueKeysAt } from './bullmq.js';
import { DEDUP_TTL_MS, INBOUND_QUEUE, type InboundJobPayload } from './contract.js';
import { createInboundProducer, type InboundProducer, type ProducerPath } from './producer.js';
import { queueLayouts, type QueueLayouts, type QueueShard } from './shards.js';

/**
 * The gateway's side of QUEUE_SHARDS: one {@link createInboundProducer} per queue of the current
 * layout (each batches on its own), and the routing of a message by its sender's openid
 * (queue/shards.ts). With one layout that is all.
 *
 * **While QUEUE_SHARDS changes** (QUEUE_SHARDS_ALSO set), a message may be held by either layout:
 * gateways of both settings run side by side during a rolling restart, and WeChat's retries of one
 * message land on any of them. The one place that says which layout holds a message is its
 * deduplication key in the layout with fewer shards (the *arbiter*), consulted atomically by both:
 * - a gateway routing to the arbiter layout adds as usual (BullMQ's add sets that key atomically,
 *   or finds it set); when Redis already held the message, the key's value says where: a job id
 *   (here), or a `moved-to:` marker (the other layout), where it then adds the message too: the
 *   gateway that set the marker may have failed to add it there (its attempt got 503), and this
 *   attempt may be WeChat's last;
 * - a gateway routing to the other layout first sets the marker in the arbiter's key unless the key
 *   is there (one script on one key), and adds to its own queue only when the key was absent or was
 *   a marker already; when it was a job id the arbiter layout holds the message.
 * A marker lives as long as a dedup key ({@link DEDUP_TTL_MS}) and makes BullMQ's own add of the
 * message to the arbiter layout a deduplicated no-op. So whichever gateways take a message's
 * attempts, it is queued once, and each attempt learns which queue holds it ({@link Placement}),
 * where its passive answer is recorded.
 */

/** Where a message is: in which queue, and whether Redis held it before this call. */
export interface Placement {
  /** Redis already held the message (a re-delivery: nothing was added). */
  readonly held: boolean;
  /** The queue that holds it. */
  readonly queue: QueueShard;
}

export interface ShardedProducerOptions {
  readonly redis: RedisClient;
  /** QUEUE_PREFIX. */
  readonly prefix: string;
  /** QUEUE_SHARDS and QUEUE_SHARDS_ALSO. */
  readonly shards: { readonly count: number; readonly also?: number };
  /** Defaults to {@link INBOUND_QUEUE}. */
  readonly queueName?: string;
  /** How long Redis has to take a message (ENQUEUE_TIMEOUT_MS). */
  readonly timeoutMs: number;
  readonly path?: ProducerPath;
  /** REDIS_ACK_REPLICAS, for every shard's producer (each confirms its own batches). */
  readonly ackReplicas?: number;
  readonly onReplicaShortfall?: (callers: number) => void;
}

export interface ShardedProducer {
  readonly layouts: QueueLayouts;
  /** One per queue of the current layout, in shard order. */
  readonly producers: readonly InboundProducer[];
  /** One per queue in use (`layouts.all`: the current layout's, then the other's), in that order. */
  readonly all: readonly InboundProducer[];
  readonly via: ProducerPath;
  readonly reason?: string;
  /**
   * Puts a message on its user's queue (or finds it queued in either layout). Resolves once Redis
   * holds it; rejects with WX_ERR_ENQUEUE when Redis cannot take it within the budget.
   */
  readonly place: (jobId: string, payload: InboundJobPayload) => Promise<Placement>;
  /** True when a message of `openid` with this job id was queued within the dedup window (either layout). */
  readonly isQueued: (jobId: string, openid: string) => Promise<boolean>;
  /** The current layout's queue of `openid`'s messages. */
  readonly queueOf: (openid: string) => Queue;
  readonly close: () => Promise<void>;
}

const MARKER = 'moved-to:';

/* KEYS: 1 the arbiter's dedup key. ARGV: 1 marker, 2 ttl (ms). Returns the key's value, or nil once it set the marker. */
const MARK_LUA = `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`;
const MARK_COMMAND = 'wxrelayMarkMoved';

function withinBudget<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WxError('WX_ERR_ENQUEUE', `redis did not answer ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout])
    .catch((err: unknown) => {
      throw err instanceof WxError ? err : new WxError('WX_ERR_ENQUEUE', `redis did not answer ${what}`, { cause: err });
    })
    .finally(() => clearTimeout(timer));
}

export function createShardedProducer(opts: ShardedProducerOptions): ShardedProducer {
  const { redis, timeoutMs } = opts;
  const layouts = queueLayouts(opts.prefix, opts.shards.count, opts.shards.also, opts.queueName ?? INBOUND_QUEUE);
  const all = layouts.all.map((q) => createInboundProducer({
      redis,
      prefix: q.prefix,
      queueName: q.queueName,
      timeoutMs,
      ...(opts.path === undefined ? {} : { path: opts.path }),
      ...(opts.ackReplicas === undefined ? {} : { ackReplicas: opts.ackReplicas }),
      ...(opts.onReplicaShortfall === undefined ? {} : { onReplicaShortfall: opts.onReplicaShortfall }),
    }));
  const byPrefix = new Map(layouts.all.map((q, i) => [q.prefix, all[i]!]));
  const producers = all.slice(0, layouts.current.queues.length);
  const first = producers[0]!;
  const producerOf = (queue: QueueShard): InboundProducer => byPrefix.get(queue.prefix)!;
  const dedupKey = (queue: QueueShard, jobId: string): string => queueKeysAt(queue.jobPrefix).dedupPrefix + jobId;

  let mark: ((key: string, marker: string, ttl: number) => Promise<unknown>) | undefined;
  if (layouts.also !== undefined) {
    redis.defineCommand(MARK_COMMAND, { numberOfKeys: 1, lua: MARK_LUA });
    const command = (redis as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>)[MARK_COMMAND]!;
    mark = (key, marker, ttl) => command.call(redis, key, marker, ttl);
  }
  const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString() : undefined);

  /** `place` while QUEUE_SHARDS changes: the arbiter's dedup key decides which layout holds the message. */
  const placeDuringChange = async (jobId: string, payload: InboundJobPayload, home: QueueShard, other: QueueShard, markMoved: NonNullable<typeof mark>): Promise<Placement> => {
    if (layouts.arbiter === layouts.current) {
      // Our queue's dedup key is the arbiter: BullMQ's add sets it or finds it.
      const held = await producerOf(home).enqueue(jobId, payload);
      if (!held) return { held, queue: home };
      const value = text(await redis.get(dedupKey(home, jobId)));
      if (value?.startsWith(MARKER) !== true) return { held, queue: home };
      // Moved to the other layout: there it is, or it goes now (idempotent).
      return { held: await producerOf(other).enqueue(jobId, payload), queue: other };
    }
    // The other layout's key is the arbiter: mark the message as ours there unless it holds it.
    const found = text(await markMoved(dedupKey(other, jobId), `${MARKER}${home.name}`, DEDUP_TTL_MS));
    if (found !== undefined && !found.startsWith(MARKER)) return { held: true, queue: other };
    return { held: await producerOf(home).enqueue(jobId, payload), queue: home };
  };

  return {
    layouts,
    producers,
    all,
    via: first.via,
    ...(first.reason === undefined ? {} : { reason: first.reason }),
    async place(jobId, payload) {
      const openid = payload.message.fromUserName;
      const home = layouts.current.shardFor(openid);
      const other = layouts.counterpart(home, openid);
      if (other === undefined || mark === undefined) return { held: await producerOf(home).enqueue(jobId, payload), queue: home };
      // Two commands in a row, one budget for both (ENQUEUE_TIMEOUT_MS is the callback's whole wait).
      return withinBudget(placeDuringChange(jobId, payload, home, other, mark), timeoutMs, 'the enqueue');
    },
    async isQueued(jobId, openid) {
      const home = layouts.current.shardFor(openid);
      const other = layouts.counterpart(home, openid);
      if (other === undefined) return producerOf(home).isQueued(jobId);
      // A marker in the other layout's key means "queued here", which this key says too.
      const [here, there] = await Promise.all([producerOf(home).isQueued(jobId), withinBudget(redis.get(dedupKey(other, jobId)), timeoutMs, 'the dedup lookup')]);
      const value = text(there);
      return here || (value !== undefined && !value.startsWith(MARKER));
    },
    queueOf: (openid) => producerOf(layouts.current.shardFor(openid)).queue,
    async close() {
      await Promise.all(all.map((p) => p.close()));
    },
  };
}

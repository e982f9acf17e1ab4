import { Queue } from 'bullmq';
import type { RedisClient } from '../redis-connection.js';
import { WxError } from '../errors.js';
import { ADD_STANDARD_JOB_KEYS, DEDUP_OPTION, checkBullmqInternals, problemsFor, queueKeysAt } from './bullmq.js';
import { DEDUP_TTL_MS, DEFAULT_JOB_OPTIONS, INBOUND_EVENTS_MAX_LEN, INBOUND_QUEUE, JOB_NAMES, type InboundJobPayload } from './contract.js';
import { createReplicaWaiter } from './replicas.js';

/**
 * The producer side of the door: puts inbound jobs on the queue, batched, in one Redis command per
 * batch, running **BullMQ's own add script** (`addStandardJob`, read from the installed bullmq)
 * once per job inside one EVALSHA.
 *
 * Why: `Queue.addBulk` sends one EVALSHA per job, and building each one (a `Job`, `asJSON`, option
 * encoding, two msgpack encodings, an ioredis command of 12 arguments written piece by piece into a
 * buffer) was the largest part of the gateway's time per callback (bench/analysis.md). Here a job is
 * its id and its JSON, copied once into the batch's single argument; the options and the other
 * arguments are built in Lua from values sent once per batch.
 *
 * What stays BullMQ's: the Lua that writes the job (hash, wait list, marker, `added`/`waiting`
 * events, job-id and deduplication checks), the key layout, the option names. What is ours: the
 * loop, and handing the script its arguments as Lua tables (its only msgpack use is unpacking two
 * of them). A job added here is indistinguishable from one added by `Queue.add` (the gateway's
 * tests compare them field by field). The startup check (queue/bullmq.ts) accepts only the script
 * digests this was written against; for anything else {@link createQueueAdder} falls back to
 * `Queue.addBulk`, slower but still correct.
 *
 * Each job also comes back with whether Redis already held it (its deduplication key or the job
 * itself), so re-deliveries are counted wherever they land — not only by the instance that took
 * the first delivery.
 */

/** How jobs reach Redis: one command per batch (BullMQ's add script), or BullMQ's `Queue.addBulk`. */
export type ProducerPath = 'script' | 'addBulk';

/** What each job of a batch needs; everything else is fixed per adder. */
export interface BulkJob {
  readonly jobId: string;
  readonly data: unknown;
}

export interface BulkAddOptions {
  /** Job name (one per adder). */
  readonly name: string;
  /** Options carried by every job (e.g. attempts and backoff), as `Queue.add` would take them. */
  readonly jobOptions: Readonly<Record<string, unknown>>;
  /** Deduplication TTL: each job's id doubles as its deduplication id. */
  readonly dedupTtlMs: number;
  /**
   * The queue's event-stream cap to restore on each batch when Redis lost the queue's meta (see
   * {@link INBOUND_EVENTS_MAX_LEN}: the workers' order depends on it).
   */
  readonly eventsMaxLen?: number;
}

export interface BulkAdder {
  /**
   * Resolves once Redis holds every job, with one flag per job: true when Redis already held it
   * (a re-delivery), false when this call added it. Rejects when the batch may not be in Redis.
   */
  add(jobs: readonly BulkJob[]): Promise<boolean[]>;
}

const BATCH_COMMAND = 'wxrelayAddStandardJobs';

/**
 * BullMQ's `addStandardJob` Lua from the installed package when the startup check knows its
 * digest (and our key layout is BullMQ's), or the reasons it cannot be used.
 */
export function loadAddStandardJob(): { lua: string } | { unavailable: string } {
  const check = checkBullmqInternals();
  const problems = problemsFor(check, 'producer');
  if (problems.length > 0 || check.addStandardJob === undefined) {
    return { unavailable: problems.map((p) => p.what).join('; ') || `addStandardJob of bullmq ${check.version} not found` };
  }
  return { lua: check.addStandardJob };
}

/*
 * The batch script. BullMQ's script body becomes a function of (KEYS, ARGV, cmsgpack), called once
 * per job with ARGV[1] and ARGV[3] as the tables its `cmsgpack.unpack` calls would have produced,
 * and a `cmsgpack` that hands them over as they are.
 *
 * KEYS: BullMQ's 9. ARGV: 1 msgpack array of (job id, JSON data) strings, 2 key prefix, 3 job name,
 * 4 timestamp (ms), 5 deduplication key prefix, 6 deduplication TTL (ms), 7 the common job options
 * as JSON, 8 the event-stream cap to restore when the queue's meta lost it ('' for none). Returns,
 * per job, BullMQ's answer (the job id, or a negative error code) and 1 when Redis already held the
 * job or its deduplication key.
 */
function batchLua(addStandardJob: string): string {
  return `-- wxrelay: BullMQ's addStandardJob (verbatim below) once per job of a batch.
local function addStandardJob(KEYS, ARGV, cmsgpack)
${addStandardJob}
end
local asUnpacked = { unpack = function(value) return value end }
local batch = cmsgpack.unpack(ARGV[1])
local prefix, name, timestamp = ARGV[2], ARGV[3], tonumber(ARGV[4])
local dedupPrefix, ttl, common = ARGV[5], tonumber(ARGV[6]), ARGV[7]
if ARGV[8] ~= '' and redis.call('HEXISTS', KEYS[3], 'opts.maxLenEvents') == 0 then
  redis.call('HSET', KEYS[3], 'opts.maxLenEvents', ARGV[8])
end
local out = {}
for i = 1, #batch, 2 do
  local jobId, data = batch[i], batch[i + 1]
  local dedupKey = dedupPrefix .. jobId
  local held = redis.call('EXISTS', dedupKey, prefix .. jobId) > 0 and 1 or 0
  local opts = cjson.decode(common)
  opts['jobId'] = jobId
  opts['${DEDUP_OPTION}'] = { id = jobId, ttl = ttl }
  local args = { prefix, jobId, name, timestamp, nil, nil, nil, nil, dedupKey, nil }
  out[#out + 1] = addStandardJob(KEYS, { args, data, opts }, asUnpacked)
  out[#out + 1] = held
end
return out
`;
}

const STR32 = 0xdb;
const ARRAY32 = 0xdd;

/**
 * A msgpack array of raw strings (str 32 each): the script receives the bytes exactly as given.
 * (Lua's cmsgpack reads `str` but not `bin`, which is what a msgpack library makes of a Buffer.)
 */
export function packRawStrings(parts: readonly (Buffer | string)[]): Buffer {
  let length = 5;
  const sizes = new Array<number>(parts.length);
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const size = typeof part === 'string' ? Buffer.byteLength(part) : part.length;
    sizes[i] = size;
    length += 5 + size;
  }
  const out = Buffer.allocUnsafe(length);
  out[0] = ARRAY32;
  out.writeUInt32BE(parts.length, 1);
  let at = 5;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const size = sizes[i]!;
    out[at] = STR32;
    out.writeUInt32BE(size, at + 1);
    at += 5;
    if (typeof part === 'string') out.write(part, at, size, 'utf8');
    else part.copy(out, at);
    at += size;
  }
  return out;
}

type BatchCommand = (...args: (string | Buffer)[]) => Promise<unknown>;

export interface QueueAdder extends BulkAdder {
  /** `script`: one command per batch; `addBulk`: BullMQ's `Queue.addBulk` (the check refused the script, or the caller asked). */
  readonly via: ProducerPath;
  /** Why the script path is off (when `via` is `addBulk`). */
  readonly reason?: string;
}

/**
 * A batch adder on `redis` for `queue` (same Redis, same prefix): the one-command path when the
 * installed bullmq's add script is the one encoded for here, else `Queue.addBulk` with the same
 * options (correct, slower, one more round trip to tell re-deliveries apart).
 */
export function createQueueAdder(
  queue: Queue,
  redis: RedisClient,
  opts: BulkAddOptions,
  loadScript: () => ReturnType<typeof loadAddStandardJob> = loadAddStandardJob,
): QueueAdder {
  const { name, jobOptions, dedupTtlMs } = opts;
  const keys = queueKeysAt(queue.toKey(''));
  const keyPrefix = keys.jobPrefix;
  const dedupPrefix = keys.dedupPrefix;
  const metaKey = keys.key('meta');
  const script = loadScript();
  if ('unavailable' in script) {
    // One batch at a time: its "already held" check must see every earlier batch added (the
    // script path gets that from Redis running each batch's command atomically, in order).
    let tail: Promise<unknown> = Promise.resolve();
    const addNow = async (jobs: readonly BulkJob[]): Promise<boolean[]> => {
      const pipeline = redis.pipeline();
      // The event-stream cap, as the batch script restores it (before BullMQ's add would write its default).
      if (opts.eventsMaxLen !== undefined) pipeline.hsetnx(metaKey, 'opts.maxLenEvents', String(opts.eventsMaxLen));
      const first = opts.eventsMaxLen === undefined ? 0 : 1;
      for (const j of jobs) pipeline.exists(dedupPrefix + j.jobId, keyPrefix + j.jobId);
      const held = (await pipeline.exec()) ?? [];
      await queue.addBulk(jobs.map((j) => ({ name, data: j.data, opts: { ...jobOptions, jobId: j.jobId, deduplication: { id: j.jobId, ttl: dedupTtlMs } } })));
      // As the script answers: a job twice in one batch is held the second time (added by the first).
      const seen = new Set<string>();
      return jobs.map((j, i) => {
        const [err, count] = held[first + i] ?? [];
        const again = seen.has(j.jobId);
        seen.add(j.jobId);
        return again || (err === null && typeof count === 'number' && count > 0);
      });
    };
    return {
      via: 'addBulk',
      reason: script.unavailable,
      add(jobs) {
        const run = tail.then(() => addNow(jobs));
        tail = run.catch(() => undefined);
        return run;
      },
    };
  }
  redis.defineCommand(BATCH_COMMAND, { numberOfKeys: ADD_STANDARD_JOB_KEYS.length, lua: batchLua(script.lua) });
  const command = (redis as unknown as Record<string, BatchCommand>)[BATCH_COMMAND]!.bind(redis);
  const scriptKeys = ADD_STANDARD_JOB_KEYS.map((k) => keys.key(k));
  const common = JSON.stringify(jobOptions);
  const ttl = String(dedupTtlMs);
  const eventsMaxLen = opts.eventsMaxLen === undefined ? '' : String(opts.eventsMaxLen);

  return {
    via: 'script',
    async add(jobs) {
      if (jobs.length === 0) return [];
      const parts: string[] = [];
      for (const job of jobs) parts.push(job.jobId, JSON.stringify(job.data));
      const answer = await command(...scriptKeys, packRawStrings(parts), keyPrefix, name, String(Date.now()), dedupPrefix, ttl, common, eventsMaxLen);
      if (!Array.isArray(answer) || answer.length !== jobs.length * 2) {
        throw new Error(`batch add answered ${JSON.stringify(answer)} for ${jobs.length} jobs`);
      }
      const held: boolean[] = [];
      for (let i = 0; i < answer.length; i += 2) {
        // A number is one of BullMQ's error codes (negative); a standard job with a custom id
        // answers its id, whether new, already there, or deduplicated.
        const id: unknown = answer[i];
        if (typeof id !== 'string') throw new Error(`batch add answered code ${String(id)}`);
        held.push(answer[i + 1] === 1);
      }
      return held;
    },
  };
}

/**
 * Callbacks sent to Redis in one command at most. Small enough that Redis runs one batch while the
 * gateway parses the next (one large batch leaves the gateway idle while Redis works), large
 * enough that the per-command cost is shared. bench/analysis.md has the numbers.
 */
export const MAX_BATCH = 16;

export interface InboundProducerOptions {
  readonly redis: RedisClient;
  /** BullMQ key prefix (`<prefix>:<queue>:…`). */
  readonly prefix: string;
  /** Defaults to {@link INBOUND_QUEUE}. */
  readonly queueName?: string;
  /** How long Redis has to take a batch (or answer a dedup lookup) before callers get WX_ERR_ENQUEUE. */
  readonly timeoutMs: number;
  /**
   * `addBulk` forces the fallback (the gateway's suite runs on both paths). Default: the one-command
   * path when the startup check accepts the installed bullmq, else `addBulk`.
   */
  readonly path?: ProducerPath;
  /**
   * Acks that survive a failover (REDIS_ACK_REPLICAS): a batch's callers resolve only once this many
   * replicas confirmed it (`WAIT` on the connection that wrote it, see queue/replicas.ts), within
   * the same `timeoutMs`; otherwise they get WX_ERR_ENQUEUE. Default 0: once the master holds it.
   */
  readonly ackReplicas?: number;
  /** Told how many callers were refused because too few replicas confirmed their batch in time. */
  readonly onReplicaShortfall?: (callers: number) => void;
}

export interface InboundProducer {
  /** The BullMQ queue (sets the event-stream cap in its meta when it starts). */
  readonly queue: Queue;
  readonly via: ProducerPath;
  /** Why the one-command path is off (when `via` is `addBulk`): worth a warning at startup. */
  readonly reason?: string;
  /**
   * Puts one callback on the inbound queue under `jobId`. Resolves only once Redis holds the
   * job (with `ackReplicas`, once that many replicas confirmed it too) — with true when it already held it (a re-delivery: the add was a no-op), false when this
   * call added it; rejects with WX_ERR_ENQUEUE when Redis cannot take it within the budget.
   */
  readonly enqueue: (jobId: string, payload: InboundJobPayload) => Promise<boolean>;
  /** True when a message with this job id was queued within the dedup window (any instance). */
  readonly isQueued: (jobId: string) => Promise<boolean>;
  readonly close: () => Promise<void>;
}

interface PendingEnqueue {
  readonly jobId: string;
  readonly payload: InboundJobPayload;
  resolve(alreadyHeld: boolean): void;
  reject(err: unknown): void;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WxError('WX_ERR_ENQUEUE', `redis did not take the job within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The inbound queue's producer on `redis`: runs the startup check of BullMQ's internals once (by
 * building its adder) and picks the path.
 *
 * Enqueues are batched: every callback parsed in one event-loop turn (up to {@link MAX_BATCH})
 * goes to Redis in one command (BullMQ's add script run once per job, see {@link createQueueAdder})
 * instead of one write each. Under a burst this is where the gateway's time goes (building and
 * writing Redis commands); when idle a batch is one callback and adds no delay beyond a
 * setImmediate. The cap keeps a burst from holding every ack until the whole burst is in Redis, and
 * lets Redis work on one batch while the gateway parses the next.
 *
 * Exactly-once rests on BullMQ's atomic add: the job id, plus a deduplication key that outlives
 * WeChat's retry window ({@link DEDUP_TTL_MS}) even when the completed job is gone.
 *
 * With `ackReplicas` (REDIS_ACK_REPLICAS), a batch in the master is followed by `WAIT` on the same
 * connection, within what is left of the batch's budget; its callers resolve only when enough
 * replicas confirmed (a refusal is reported to `onReplicaShortfall`). Batches share the connection:
 * a WAIT covers the batches written before it too, and Redis runs nothing else of that connection
 * while a WAIT blocks (that is the cost; bench scenario 8 measures it).
 */
export function createInboundProducer(opts: InboundProducerOptions): InboundProducer {
  const { redis, prefix, timeoutMs } = opts;
  const ackReplicas = opts.ackReplicas ?? 0;
  if (!Number.isInteger(ackReplicas) || ackReplicas < 0) throw new Error(`ackReplicas must be a whole number ≥ 0 (got ${ackReplicas})`);
  const queue = new Queue(opts.queueName ?? INBOUND_QUEUE, {
    connection: redis,
    prefix,
    defaultJobOptions: DEFAULT_JOB_OPTIONS,
    // The workers' order reads this stream: see INBOUND_EVENTS_MAX_LEN (the adder restores it).
    streams: { events: { maxLen: INBOUND_EVENTS_MAX_LEN } },
  });
  const adder = createQueueAdder(
    queue,
    redis,
    { name: JOB_NAMES.inbound, jobOptions: DEFAULT_JOB_OPTIONS, dedupTtlMs: DEDUP_TTL_MS, eventsMaxLen: INBOUND_EVENTS_MAX_LEN },
    opts.path === 'addBulk' ? () => ({ unavailable: 'addBulk requested by the caller' }) : loadAddStandardJob,
  );
  const keys = queueKeysAt(queue.toKey(''));
  const replicas = ackReplicas > 0 ? createReplicaWaiter(redis, keys.key('meta')) : undefined;

  let pending: PendingEnqueue[] = [];
  let scheduled = false;
  // WAITs sent and not answered yet. Redis runs nothing else of the connection while one blocks, so
  // a batch that times out meanwhile was held up by the replicas too, not by Redis taking it.
  let waitsOutstanding = 0;
  const flush = (): void => {
    scheduled = false;
    if (pending.length === 0) return;
    const batch = pending;
    pending = [];
    // One deadline per batch: it is one command with one answer (and, with ackReplicas, one WAIT).
    // A batch that fails or times out may still have landed in part; WeChat's retry of it is then
    // deduplicated.
    let settled = false;
    // With ackReplicas: the batch is in the master, its replicas have yet to confirm it.
    let confirming = false;
    const fail = (err: WxError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const p of batch) p.reject(err);
    };
    const shortfall = (what: string): void => {
      if (settled) return;
      opts.onReplicaShortfall?.(batch.length);
      fail(new WxError('WX_ERR_ENQUEUE', what));
    };
    const deadline = Date.now() + timeoutMs;
    const timer = setTimeout(() => {
      if (confirming) shortfall(`${ackReplicas} replica(s) did not confirm the job within ${timeoutMs} ms`);
      else if (waitsOutstanding > 0) shortfall(`${ackReplicas} replica(s) did not confirm an earlier job within ${timeoutMs} ms (WAIT holds the connection)`);
      else fail(new WxError('WX_ERR_ENQUEUE', `redis did not take the job within ${timeoutMs} ms`));
    }, timeoutMs);
    // WAIT covers the writes its connection made before it: note which connection the batch goes out on.
    const link = replicas?.link();
    adder.add(batch.map((p) => ({ jobId: p.jobId, data: p.payload }))).then(
      (held) => {
        if (settled) return;
        const ack = (): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          for (let i = 0; i < batch.length; i++) batch[i]!.resolve(held[i] === true);
        };
        if (replicas === undefined) return ack();
        if (link === undefined) return fail(new WxError('WX_ERR_ENQUEUE', 'no connection to ask the replicas on'));
        confirming = true;
        waitsOutstanding += 1;
        // Within what is left of the budget: Redis unblocks the connection when it runs out.
        replicas
          .confirm(link, ackReplicas, deadline - Date.now())
          .finally(() => (waitsOutstanding -= 1))
          .then(
            (confirmed) => {
              if (confirmed >= ackReplicas) ack();
              else shortfall(`only ${confirmed} of ${ackReplicas} replica(s) confirmed the job within ${timeoutMs} ms`);
            },
            (err: unknown) => fail(new WxError('WX_ERR_ENQUEUE', 'the replicas could not confirm the job', { cause: err })),
          );
      },
      (err: unknown) => fail(new WxError('WX_ERR_ENQUEUE', 'redis did not take the job', { cause: err })),
    );
  };

  return {
    queue,
    via: adder.via,
    ...(adder.reason === undefined ? {} : { reason: adder.reason }),
    enqueue: (jobId, payload) =>
      new Promise((resolve, reject) => {
        pending.push({ jobId, payload, resolve, reject });
        if (pending.length >= MAX_BATCH) flush();
        else if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      }),
    isQueued: async (jobId) => {
      try {
        return (await withTimeout(redis.exists(keys.dedupPrefix + jobId), timeoutMs)) === 1;
      } catch (err) {
        // Without Redis we cannot tell a retry from a replay: 503, so WeChat tries again later.
        if (err instanceof WxError) throw err;
        throw new WxError('WX_ERR_ENQUEUE', 'redis did not answer the dedup lookup', { cause: err });
      }
    },
    close: () => queue.close(),
  };
}

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

/**
 * Adds a batch of jobs to a BullMQ queue in one Redis command, running **BullMQ's own add script**
 * (`addStandardJob`, read from the installed bullmq) once per job inside one EVALSHA.
 *
 * Why: `Queue.addBulk` sends one EVALSHA per job, and building each one (a `Job`, `asJSON`, option
 * encoding, two msgpack encodings, an ioredis command of 12 arguments written piece by piece into a
 * buffer) was the largest part of the gateway's time per callback (bench/analysis.md). Here a job is
 * its id and its JSON, copied once into the batch's single argument; the options and the other
 * arguments are built in Lua from values sent once per batch.
 *
 * What stays BullMQ's: the Lua that writes the job (hash, wait list, marker, `added`/`waiting`
 * events, job-id and deduplication checks), the key layout, the option names. What is ours: the
 * loop, and handing the script its arguments as Lua tables (its header documents them; its only
 * msgpack use is unpacking two of them). A job added here is indistinguishable from one added by
 * `Queue.add` (the tests compare them field by field), and {@link loadAddStandardJob} refuses a
 * bullmq whose script no longer reads its arguments as written here: {@link createQueueAdder} then
 * falls back to `Queue.addBulk`, slower but still correct.
 *
 * Each job also comes back with whether Redis already held it (its deduplication key or the job
 * itself), so re-deliveries are counted wherever they land — not only by the instance that took
 * the first delivery.
 */

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
   * The queue's event-stream cap (BullMQ's `opts.maxLenEvents` in the queue's meta). `Queue` writes
   * it once, when it starts; when Redis has lost it since (flushed, or a replica promoted empty),
   * BullMQ's script would quietly fall back to 10,000, so each batch puts it back first.
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

/** Keys of BullMQ's `addStandardJob` script (KEYS[1..9]), in order. */
const SCRIPT_KEYS = ['wait', 'paused', 'meta', 'id', 'completed', 'delayed', 'active', 'events', 'marker'] as const;

/**
 * Lines of the script that pin how it takes its arguments: the layout its header documents, and
 * the two places it unpacks them. A bullmq release that changes either changes these lines, and
 * the one-command path turns itself off.
 */
const LAYOUT = [
  'ARGV[1] msgpacked arguments array',
  '[1]  key prefix,',
  '[2]  custom id (will not generate one automatically)',
  '[3]  name',
  '[4]  timestamp',
  '[9] deduplication key',
  '[10] defer parent release (flow inserts)',
  'ARGV[2] Json stringified job data',
  'ARGV[3] msgpacked options',
  'local args = cmsgpack.unpack(ARGV[1])',
  'local opts = cmsgpack.unpack(ARGV[3])',
] as const;

/** BullMQ's option names for what this adder sets per job (`optsAsJSON` encodes `deduplication` as `de`). */
const DEDUP_OPTION = 'de';

const BATCH_COMMAND = 'wxrelayAddStandardJobs';

/**
 * BullMQ's `addStandardJob` Lua from the installed package, or a reason it cannot be used.
 */
export function loadAddStandardJob(): { lua: string } | { unavailable: string } {
  const require = createRequire(import.meta.url);
  let scriptsDir: string;
  try {
    scriptsDir = join(dirname(require.resolve('bullmq')), 'scripts');
  } catch (err) {
    return { unavailable: `bullmq not resolvable: ${String(err)}` };
  }
  const file = join(scriptsDir, `addStandardJob-${SCRIPT_KEYS.length}.js`);
  let mod: { addStandardJob?: { content?: unknown; keys?: unknown } };
  try {
    // A renamed file (the key count is in its name) is the usual way a layout change shows.
    mod = require(file) as typeof mod;
  } catch {
    return { unavailable: `${file} not found` };
  }
  const content = mod.addStandardJob?.content;
  if (typeof content !== 'string' || mod.addStandardJob?.keys !== SCRIPT_KEYS.length) {
    return { unavailable: `${file} does not export addStandardJob with ${SCRIPT_KEYS.length} keys` };
  }
  const missing = LAYOUT.filter((line) => !content.includes(line));
  if (missing.length > 0) return { unavailable: `addStandardJob no longer reads: ${missing.join(' | ')}` };
  if (content.split('cmsgpack.').length - 1 !== 2) return { unavailable: 'addStandardJob uses cmsgpack beyond unpacking ARGV[1] and ARGV[3]' };
  if (content.startsWith('#!')) return { unavailable: 'addStandardJob declares script flags' };
  return { lua: content };
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
  /** `script`: one command per batch; `addBulk`: BullMQ's `Queue.addBulk` (this bullmq's script is not the one encoded for). */
  readonly via: 'script' | 'addBulk';
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
  redis: Redis,
  opts: BulkAddOptions,
  loadScript: () => ReturnType<typeof loadAddStandardJob> = loadAddStandardJob,
): QueueAdder {
  const { name, jobOptions, dedupTtlMs } = opts;
  const keyPrefix = queue.toKey('');
  const dedupPrefix = `${queue.toKey('de')}:`;
  const script = loadScript();
  if ('unavailable' in script) {
    return {
      via: 'addBulk',
      reason: script.unavailable,
      async add(jobs) {
        const pipeline = redis.pipeline();
        for (const j of jobs) pipeline.exists(dedupPrefix + j.jobId, keyPrefix + j.jobId);
        const held = (await pipeline.exec()) ?? [];
        await queue.addBulk(jobs.map((j) => ({ name, data: j.data, opts: { ...jobOptions, jobId: j.jobId, deduplication: { id: j.jobId, ttl: dedupTtlMs } } })));
        return jobs.map((_, i) => {
          const [err, count] = held[i] ?? [];
          return err === null && typeof count === 'number' && count > 0;
        });
      },
    };
  }
  redis.defineCommand(BATCH_COMMAND, { numberOfKeys: SCRIPT_KEYS.length, lua: batchLua(script.lua) });
  const command = (redis as unknown as Record<string, BatchCommand>)[BATCH_COMMAND]!.bind(redis);
  const keys = SCRIPT_KEYS.map((k) => queue.toKey(k));
  const common = JSON.stringify(jobOptions);
  const ttl = String(dedupTtlMs);
  const eventsMaxLen = opts.eventsMaxLen === undefined ? '' : String(opts.eventsMaxLen);

  return {
    via: 'script',
    async add(jobs) {
      if (jobs.length === 0) return [];
      const parts: string[] = [];
      for (const job of jobs) parts.push(job.jobId, JSON.stringify(job.data));
      const answer = await command(...keys, packRawStrings(parts), keyPrefix, name, String(Date.now()), dedupPrefix, ttl, common, eventsMaxLen);
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

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Packr } from 'msgpackr';

/**
 * Adds a batch of jobs to a BullMQ queue in one Redis command, running **BullMQ's own add script**
 * (`addStandardJob`, read from the installed bullmq) once per job inside one EVALSHA.
 *
 * Why: `Queue.addBulk` sends one EVALSHA per job, and building each one (a `Job`, `asJSON`, option
 * encoding, an ioredis command of 12 arguments written piece by piece into a buffer) cost the
 * gateway ~25 µs per message — a third of its time per callback. Here the per-job work is two small
 * msgpack encodings and one copy, and Redis runs one script call per batch.
 *
 * What stays BullMQ's: the Lua that writes the job (hash, wait list, marker, `added`/`waiting`
 * events, job-id and deduplication checks), the key layout, the option names. What is ours: the
 * argument encoding the script documents in its header, and the loop. A job added here is
 * indistinguishable from one added by `Queue.add` (the tests compare them field by field), and
 * {@link loadAddStandardJob} refuses a bullmq whose script no longer documents the layout written
 * here: {@link createQueueAdder} then falls back to `Queue.addBulk`, slower but still correct.
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
}

export interface BulkAdder {
  /** Resolves once Redis holds every job (new or already there); rejects when it holds none for sure. */
  add(jobs: readonly BulkJob[]): Promise<void>;
}

/** Keys of BullMQ's `addStandardJob` script (KEYS[1..9]), in order. */
const SCRIPT_KEYS = ['wait', 'paused', 'meta', 'id', 'completed', 'delayed', 'active', 'events', 'marker'] as const;

/**
 * Lines of the script's own header that pin the argument layout encoded below. If a bullmq release
 * changes the layout, it changes these lines, and the fast path turns itself off.
 */
const LAYOUT_DOC = [
  'ARGV[1] msgpacked arguments array',
  '[1]  key prefix,',
  '[2]  custom id (will not generate one automatically)',
  '[3]  name',
  '[4]  timestamp',
  '[9] deduplication key',
  '[10] defer parent release (flow inserts)',
  'ARGV[2] Json stringified job data',
  'ARGV[3] msgpacked options',
] as const;

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
  const missing = LAYOUT_DOC.filter((line) => !content.includes(line));
  if (missing.length > 0) return { unavailable: `addStandardJob no longer documents: ${missing.join(' | ')}` };
  if (content.startsWith('#!')) return { unavailable: 'addStandardJob declares script flags' };
  return { lua: content };
}

/**
 * The batch script: BullMQ's script body becomes a function of (KEYS, ARGV), called once per job.
 * ARGV[1] is a msgpack array holding, per job, the three strings BullMQ would pass as ARGV[1..3].
 */
function batchLua(addStandardJob: string): string {
  return [
    '-- wxrelay: BullMQ addStandardJob (verbatim below) once per job of a batch.',
    '-- ARGV[1]: msgpack array of 3 strings per job (packed args, JSON data, packed options).',
    'local function addStandardJob(KEYS, ARGV)',
    addStandardJob,
    'end',
    'local batch = cmsgpack.unpack(ARGV[1])',
    'local ids = {}',
    'for i = 1, #batch, 3 do',
    '  ids[#ids + 1] = addStandardJob(KEYS, { batch[i], batch[i + 1], batch[i + 2] })',
    'end',
    'return ids',
  ].join('\n');
}

/** BullMQ's encoding of its script arguments (same msgpackr options as bullmq uses). */
const packr = new Packr({ useRecords: false, encodeUndefinedAsNil: true });

const STR32 = 0xdb;
const ARRAY32 = 0xdd;

/**
 * A msgpack array of raw strings (str 32 each): the scripts receive bytes exactly as given. Lua's
 * cmsgpack reads `str` but not `bin`, which is what msgpackr would make of a Buffer.
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
 * options (correct, a third slower).
 */
export function createQueueAdder(
  queue: Queue,
  redis: Redis,
  opts: BulkAddOptions,
  loadScript: () => ReturnType<typeof loadAddStandardJob> = loadAddStandardJob,
): QueueAdder {
  const { name, jobOptions, dedupTtlMs } = opts;
  const script = loadScript();
  if ('unavailable' in script) {
    return {
      via: 'addBulk',
      reason: script.unavailable,
      async add(jobs) {
        await queue.addBulk(jobs.map((j) => ({ name, data: j.data, opts: { ...jobOptions, jobId: j.jobId, deduplication: { id: j.jobId, ttl: dedupTtlMs } } })));
      },
    };
  }
  redis.defineCommand(BATCH_COMMAND, { numberOfKeys: SCRIPT_KEYS.length, lua: batchLua(script.lua) });
  const command = (redis as unknown as Record<string, BatchCommand>)[BATCH_COMMAND]!.bind(redis);

  const keyPrefix = queue.toKey('');
  const dedupPrefix = `${queue.toKey('de')}:`;
  const keys = SCRIPT_KEYS.map((k) => queue.toKey(k));

  return {
    via: 'script',
    async add(jobs) {
      if (jobs.length === 0) return;
      const timestamp = Date.now();
      const parts: (Buffer | string)[] = [];
      for (const job of jobs) {
        const { jobId } = job;
        parts.push(
          packr.pack([keyPrefix, jobId, name, timestamp, null, null, undefined, undefined, dedupPrefix + jobId, null]),
          JSON.stringify(job.data),
          // BullMQ's own option encoding for these jobs: `deduplication` travels as `de`.
          packr.pack({ ...jobOptions, jobId, de: { id: jobId, ttl: dedupTtlMs } }),
        );
      }
      const ids = await command(...keys, packRawStrings(parts));
      if (!Array.isArray(ids) || ids.length !== jobs.length) {
        throw new Error(`batch add answered ${JSON.stringify(ids)} for ${jobs.length} jobs`);
      }
      for (const id of ids) {
        // A number is one of BullMQ's error codes (negative); a standard job with a custom id
        // answers its id, whether new, already there, or deduplicated.
        if (typeof id !== 'string') throw new Error(`batch add answered code ${String(id)}`);
      }
    },
  };
}

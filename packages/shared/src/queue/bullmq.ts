import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { QueueKeys, optsEncodeMap } from 'bullmq';

/**
 * Everything wxrelay relies on of BullMQ beyond its public API, in one place, and **the one startup
 * check** that the installed bullmq is the one it was written against.
 *
 * What we rely on:
 * - the producer runs BullMQ's own `addStandardJob` Lua once per job inside one command
 *   (queue/producer.ts), handing it its arguments as Lua tables, and reads its deduplication keys;
 * - the workers' per-user order (queue/turns.ts) reads, in Lua: the queue's event stream (`added`
 *   entries: fields `event`, `jobId`, written by `addStandardJob`), job hashes (`timestamp`, `data`
 *   written by `addStandardJob`; `finishedOn` written by `moveToFinished`), and the `wait` and
 *   `active` lists;
 * - the workers' per-job scripts (queue/job-scripts.ts) run BullMQ's own `promote` Lua (read from
 *   the installed bullmq) to wake the next job of a user when a turn is released, write a job's
 *   `data` while its lock (`<job key>:lock`) holds the worker's token, and send the release in the
 *   same round trip as BullMQ's completion, through the backend's `moveToCompleted`
 *   (queue/completion.ts);
 * - both derive key names as `<prefix>:<queue>:<type>` ({@link queueKeys}) and write BullMQ's
 *   encoded option name for `deduplication` ({@link DEDUP_OPTION}, from bullmq's own `optsEncodeMap`).
 *
 * The check ({@link checkBullmqInternals}) accepts only scripts whose sha1 it knows (each one read
 * and tested against the code here) and a key layout that matches ours. What it does not recognise:
 * - the producer falls back to `Queue.addBulk` (public API, correct, slower) with a warning;
 * - a worker refuses to start ({@link assertBullmqForTurns}): its order has no public-API
 *   equivalent, and a silent change there would reorder replies.
 *
 * Upgrading bullmq: every package.json pins the same exact version ({@link BULLMQ_VERSION}); read
 * the diff of the scripts below, run the suites, then add the new digests to {@link KNOWN_SCRIPTS}.
 */

/** The bullmq every package.json of the repository pins, exactly. */
export const BULLMQ_VERSION = '6.7.0';

/**
 * Who depends on an internal: the producer's one-command path, or the workers (their per-user
 * order, and their progress writes guarded by the job's lock).
 */
export type BullmqReliant = 'producer' | 'turns';

interface KnownScript {
  /** File under bullmq's `dist/cjs/scripts/` (the key count is in its name) and its export. */
  readonly file: string;
  readonly name: string;
  readonly keys: number;
  /** sha1 of the script's `content`, one per bullmq release read and tested (digest → version). */
  readonly digests: Readonly<Record<string, string>>;
  readonly reliants: readonly BullmqReliant[];
}

/** The BullMQ scripts whose behaviour we rely on, and the digests of the versions we accept. */
export const KNOWN_SCRIPTS = {
  /** Run by the producer's batch; writes the `added` event and the hash fields the turns read. */
  addStandardJob: {
    file: 'addStandardJob-9.js',
    name: 'addStandardJob',
    keys: 9,
    digests: { '5ab432e88830d573e2fa33392ffbd4ad25a9b100': '6.7.0' },
    reliants: ['producer', 'turns'],
  },
  /** Sets `finishedOn` on a job hash (completed or failed for good): a turn head that has it is dropped. */
  moveToFinished: {
    file: 'moveToFinished-14.js',
    name: 'moveToFinished',
    keys: 14,
    digests: { '69666e69dd5621df59067a03de685e55a486560d': '6.7.0' },
    reliants: ['turns'],
  },
  /**
   * Renews the locks of a worker's jobs: `<job key>:lock` holding the worker's token, the layout the
   * lock-guarded progress writes read (queue/job-data.ts).
   */
  extendLocks: {
    file: 'extendLocks-1.js',
    name: 'extendLocks',
    keys: 1,
    digests: { c35baf769e5dc3d9194b2bceca04ab59f7c510f7: '6.7.0' },
    reliants: ['turns'],
  },
  /**
   * Moves a delayed job to `wait` (`Job.promote`): run verbatim inside the turn release
   * (queue/job-scripts.ts), so the next job of the user, waiting in `delayed` for its turn, is woken
   * in the same command that hands it the turn.
   */
  promote: {
    file: 'promote-9.js',
    name: 'promote',
    keys: 9,
    digests: { '1d740f19fe984343737df70206877be7cbab6913': '6.7.0' },
    reliants: ['turns'],
  },
} as const satisfies Record<string, KnownScript>;

/**
 * The key of a job's lock, as BullMQ keeps it (`extendLocks`, `moveToFinished`): the job's key
 * followed by `:lock`, holding the token of the worker that has the job.
 */
export function lockKey(jobPrefix: string, jobId: string): string {
  return `${jobPrefix}${jobId}:lock`;
}

/** Keys of BullMQ's `addStandardJob` script (KEYS[1..9]), in order, as key types of the queue. */
export const ADD_STANDARD_JOB_KEYS = ['wait', 'paused', 'meta', 'id', 'completed', 'delayed', 'active', 'events', 'marker'] as const;

/** Keys of BullMQ's `promote` script (KEYS[1..9]), in order, as key types of the queue. */
export const PROMOTE_KEYS = ['delayed', 'wait', 'paused', 'meta', 'prioritized', 'active', 'pc', 'events', 'marker'] as const;

/** The key types the turns scripts read (besides job hashes, `<prefix>:<queue>:<job id>`, and their locks). */
const TURNS_KEYS = ['events', 'active', 'wait', ...PROMOTE_KEYS] as const;

/** The deduplication keys' type: `<prefix>:<queue>:de:<dedup id>`. */
const DEDUP_KEY_TYPE = 'de';

/**
 * BullMQ's encoded name of the `deduplication` job option (`Job.optsAsJSON` writes it so), which
 * the producer's batch sets on each job: taken from bullmq itself, never spelled here.
 */
export const DEDUP_OPTION: string = optsEncodeMap.deduplication;

/** The keys of one queue, derived as BullMQ derives them (the startup check holds it to that). */
export interface QueueKeyNames {
  /** `<prefix>:<queue>:`: a job's hash is this followed by its id. */
  readonly jobPrefix: string;
  /** `<prefix>:<queue>:de:`: a deduplication key is this followed by the dedup id. */
  readonly dedupPrefix: string;
  /** `<prefix>:<queue>:<type>` for any key type (`wait`, `events`, …). */
  key(type: string): string;
}

export function queueKeys(prefix: string, queueName: string): QueueKeyNames {
  return queueKeysAt(`${prefix}:${queueName}:`);
}

/** The same from a queue's job key prefix (`queue.toKey('')`, `<prefix>:<queue>:`). */
export function queueKeysAt(jobPrefix: string): QueueKeyNames {
  return { jobPrefix, dedupPrefix: `${jobPrefix}${DEDUP_KEY_TYPE}:`, key: (type) => jobPrefix + type };
}

/** Something the installed bullmq does not do as expected, and who relies on it. */
export interface BullmqProblem {
  readonly what: string;
  readonly reliants: readonly BullmqReliant[];
}

export interface BullmqCheck {
  /** The installed bullmq's version (`unknown` when its package.json cannot be read). */
  readonly version: string;
  readonly problems: readonly BullmqProblem[];
  /** The `addStandardJob` Lua, when it is one of the known digests. */
  readonly addStandardJob?: string;
  /** The `promote` Lua, when it is one of the known digests. */
  readonly promote?: string;
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

/**
 * The one startup check of BullMQ's internals: known script digests, our key derivation equal to
 * `QueueKeys`, the deduplication option name present. Synchronous, no Redis; each service calls it
 * once when it builds its side of the queue (the gateway's producer, a worker's turns).
 */
export function checkBullmqInternals(): BullmqCheck {
  const require = createRequire(import.meta.url);
  const problems: BullmqProblem[] = [];
  let version = 'unknown';
  let scriptsDir: string | undefined;
  try {
    const main = require.resolve('bullmq');
    scriptsDir = join(dirname(main), 'scripts');
    version = String((require('bullmq/package.json') as { version?: unknown }).version);
  } catch (err) {
    problems.push({ what: `bullmq not resolvable: ${String(err)}`, reliants: ['producer', 'turns'] });
  }

  let addStandardJob: string | undefined;
  let promote: string | undefined;
  for (const script of Object.values(KNOWN_SCRIPTS) as KnownScript[]) {
    if (scriptsDir === undefined) break;
    const file = join(scriptsDir, script.file);
    let mod: Record<string, { content?: unknown; keys?: unknown } | undefined>;
    try {
      // A renamed file (the key count is in its name) is the usual way a layout change shows.
      mod = require(file) as typeof mod;
    } catch {
      problems.push({ what: `${script.file} not found in bullmq ${version}`, reliants: script.reliants });
      continue;
    }
    const content = mod[script.name]?.content;
    if (typeof content !== 'string' || mod[script.name]?.keys !== script.keys) {
      problems.push({ what: `${script.file} does not export ${script.name} with ${script.keys} keys`, reliants: script.reliants });
      continue;
    }
    const digest = sha1(content);
    if (!(digest in script.digests)) {
      problems.push({ what: `${script.name} of bullmq ${version} has sha1 ${digest}, not one read for here (${Object.entries(script.digests).map(([d, v]) => `${v}: ${d}`).join(', ')})`, reliants: script.reliants });
      continue;
    }
    if (script.name === 'addStandardJob') addStandardJob = content;
    if (script.name === 'promote') promote = content;
  }

  // Key names: ours must be BullMQ's, for every key type we touch.
  const probe = { prefix: 'p', queue: 'q' };
  const bullKeys = new QueueKeys(probe.prefix);
  const ours = queueKeys(probe.prefix, probe.queue);
  const known = bullKeys.getKeys(probe.queue);
  const types: [string, BullmqReliant[]][] = [
    ...ADD_STANDARD_JOB_KEYS.map((t): [string, BullmqReliant[]] => [t, ['producer']]),
    ...TURNS_KEYS.map((t): [string, BullmqReliant[]] => [t, ['turns']]),
    [DEDUP_KEY_TYPE, ['producer']],
  ];
  for (const [type, reliants] of types) {
    if (known[type] === undefined || bullKeys.toKey(probe.queue, type) !== ours.key(type)) {
      problems.push({ what: `key type '${type}': QueueKeys gives ${String(known[type])}, we derive ${ours.key(type)}`, reliants });
    }
  }
  if (bullKeys.toKey(probe.queue, '') !== ours.jobPrefix) {
    problems.push({ what: `job key prefix: QueueKeys gives ${bullKeys.toKey(probe.queue, '')}, we derive ${ours.jobPrefix}`, reliants: ['producer', 'turns'] });
  }
  // Spliced into the batch's Lua as a table key: a plain name or nothing.
  if (typeof DEDUP_OPTION !== 'string' || !/^[A-Za-z]+$/.test(DEDUP_OPTION)) {
    problems.push({ what: `optsEncodeMap.deduplication is ${JSON.stringify(DEDUP_OPTION)}, not an option name`, reliants: ['producer'] });
  }

  return { version, problems, ...(addStandardJob === undefined ? {} : { addStandardJob }), ...(promote === undefined ? {} : { promote }) };
}

/** The problems of `check` that `reliant` cannot live with. */
export function problemsFor(check: BullmqCheck, reliant: BullmqReliant): BullmqProblem[] {
  return check.problems.filter((p) => p.reliants.includes(reliant));
}

/**
 * For a worker, at startup: throws when the installed bullmq is not one the per-user order was
 * written against (its message lists every problem). A worker must not run on guesses about the
 * event stream and job hashes: a change there would reorder replies silently.
 */
export function assertBullmqForTurns(check: BullmqCheck = checkBullmqInternals()): void {
  const problems = problemsFor(check, 'turns');
  if (problems.length === 0) return;
  throw new Error(
    `bullmq ${check.version} is not one the per-user order (queue/turns.ts) was written against; refusing to start. ` +
      `Pin bullmq ${BULLMQ_VERSION}, or review the new version and add its digests to KNOWN_SCRIPTS (packages/shared/src/queue/bullmq.ts): ` +
      problems.map((p) => p.what).join('; '),
  );
}

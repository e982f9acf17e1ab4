import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { createRedisConnection, describeRedisTopology, isCluster, type RedisClient } from '@wxrelay/shared/redis';
import { INBOUND_QUEUE, keySlot, loadCliConfig, queueLayouts, WxError, type Env, type QueueShard } from '@wxrelay/shared';
import { answerKeys } from '@wxrelay/shared/queue';
import { DEAD_LETTER_AGE_S, detail, dropDeadLetter, findDeadLetters, getDeadLetter, retryDeadLetter, summarize, type DeadLetterFilter, type DeadLetterSummary, type InboundDeadLetter } from './dead-letters.js';

/**
 * `pnpm wxrelay …`: the operator's command line: `dlq` (dead letters) and `queues` (each queue in
 * use, for QUEUE_SHARDS and its changes).
 * Exit codes: 0 done, 1 nothing matched (show, retry or drop by id), 2 usage error (with the
 * usage), 3 could not do it (Redis unreachable, configuration, a BullMQ error). Never a stack trace.
 */

export const EXIT = { ok: 0, noMatch: 1, usage: 2, failed: 3 } as const;

export const USAGE = `Usage: pnpm wxrelay dlq <command> [options]
       pnpm wxrelay queues [--json]

Queues: every queue in use (each shard of QUEUE_SHARDS, and of QUEUE_SHARDS_ALSO while it changes):
its cluster slot and node, its jobs by state, the passive answers waiting in its inboxes, and
whether it is drained (nothing left to answer: the other layout can be dropped, README "Scaling").

Dead letters: jobs of the inbound queue that failed for good (kept ${DEAD_LETTER_AGE_S / 86_400} days),
across every shard of QUEUE_SHARDS (and of QUEUE_SHARDS_ALSO while it changes).

Commands:
  list [--errcode N] [--since T] [--json]   the dead letters, newest first
  show <id> [--json]                        one dead letter: message, reason, progress
  retry <id> | --all | --errcode N | --since T
                                            back to the queue; parts already sent are not sent again
  drop <id> | --all | --errcode N | --since T [--yes]
                                            delete them (asks first unless --yes)

Options:
  --errcode N   WeChat's errcode (48001, -1) or network, http-5xx, http-other
  --since T     failed at or after T: an ISO time (2025-05-01T08:00:00Z) or a time ago (30m, 2h, 7d)
  --all         every dead letter (retry, drop)
  --json        JSON instead of a table (list, show)
  -y, --yes     drop without asking

Environment: REDIS_URL, QUEUE_PREFIX, QUEUE_SHARDS and QUEUE_SHARDS_ALSO, as the worker reads them
(a rediss:// URL uses TLS).
Exit codes: 0 done, 1 nothing matched, 2 usage error, 3 failed (e.g. Redis unreachable).`;

export interface CliIo {
  readonly env: Env;
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream;
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly now?: () => number;
}

class UsageError extends Error {}

type Command =
  | { readonly name: 'queues'; readonly json: boolean }
  | { readonly name: 'list'; readonly filter: DeadLetterFilter; readonly json: boolean }
  | { readonly name: 'show'; readonly id: string; readonly json: boolean }
  | { readonly name: 'retry' | 'drop'; readonly id?: string; readonly filter: DeadLetterFilter; readonly yes: boolean };

const DURATION = /^(\d+)(s|m|h|d|w)$/;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** `--since`: an ISO time, or a duration ago (`2h`). */
export function parseSince(text: string, now: number): number {
  const d = DURATION.exec(text);
  if (d !== null) return now - Number(d[1]) * UNIT_MS[d[2] as keyof typeof UNIT_MS];
  const t = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(t)) throw new UsageError(`--since: "${text}" is neither an ISO time (2025-05-01T08:00:00Z) nor a duration (30m, 2h, 7d)`);
  return t;
}

function parseErrcode(text: string): string {
  if (/^-?\d+$/.test(text)) return String(Number(text));
  if (['network', 'http-5xx', 'http-other'].includes(text)) return text;
  throw new UsageError(`--errcode: "${text}" is not an errcode (a number such as 48001 or -1, or network, http-5xx, http-other)`);
}

/** The command `argv` asks for (after the program name). Throws a UsageError. */
export function parseCommand(argv: readonly string[], now: number): Command {
  const [group, name, ...given] = argv;
  // `--errcode -1`: parseArgs would take -1 for an option.
  const rest = given.flatMap((a, i) => (a === '--errcode' && /^-\d+$/.test(given[i + 1] ?? '') ? [] : given[i - 1] === '--errcode' && /^-\d+$/.test(a) ? [`--errcode=${a}`] : [a]));
  if (group === undefined || group === '-h' || group === '--help' || group === 'help') throw new UsageError('');
  if (group === 'queues') {
    const args = argv.slice(1);
    if (args.some((a) => a === '-h' || a === '--help')) throw new UsageError('');
    const extra = args.filter((a) => a !== '--json');
    if (extra.length > 0) throw new UsageError(`queues takes only --json (got "${extra[0]}")`);
    return { name: 'queues', json: args.includes('--json') };
  }
  if (group !== 'dlq') throw new UsageError(`unknown command "${group}"`);
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: {
        errcode: { type: 'string' },
        since: { type: 'string' },
        all: { type: 'boolean' },
        json: { type: 'boolean' },
        yes: { type: 'boolean', short: 'y' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  if (values.help === true) throw new UsageError('');
  const filter: DeadLetterFilter = {
    ...(values.errcode === undefined ? {} : { errcode: parseErrcode(values.errcode) }),
    ...(values.since === undefined ? {} : { since: parseSince(values.since, now) }),
  };
  const filtered = Object.keys(filter).length > 0;
  const only = (allowed: readonly string[]) => {
    const given = Object.entries(values).filter(([k, v]) => v !== undefined && k !== 'help').map(([k]) => k);
    const extra = given.filter((k) => !allowed.includes(k));
    if (extra.length > 0) throw new UsageError(`dlq ${name}: --${extra.join(', --')} does not apply`);
  };
  const json = values.json === true;
  switch (name) {
    case 'list':
      only(['errcode', 'since', 'json']);
      if (positionals.length > 0) throw new UsageError(`dlq list takes no id (got "${positionals[0]}"): use dlq show <id>`);
      return { name, filter, json };
    case 'show': {
      only(['json']);
      const [id, ...more] = positionals;
      if (id === undefined || more.length > 0) throw new UsageError('dlq show needs one job id');
      return { name, id, json };
    }
    case 'retry':
    case 'drop': {
      only(name === 'drop' ? ['errcode', 'since', 'all', 'yes'] : ['errcode', 'since', 'all']);
      const [id, ...more] = positionals;
      if (more.length > 0) throw new UsageError(`dlq ${name} takes one id at a time`);
      const all = values.all === true;
      if (id !== undefined && (all || filtered)) throw new UsageError(`dlq ${name}: give an id, or --all, or filters; not both`);
      if (all && filtered) throw new UsageError(`dlq ${name}: --all or filters, not both`);
      if (id === undefined && !all && !filtered) throw new UsageError(`dlq ${name} needs an id, --all, or a filter (--errcode, --since)`);
      return { name, ...(id === undefined ? {} : { id }), filter, yes: values.yes === true };
    }
    case undefined:
      throw new UsageError('dlq needs a command: list, show, retry or drop');
    default:
      throw new UsageError(`unknown dlq command "${name}"`);
  }
}

function age(seconds: number | null): string {
  if (seconds === null) return '?';
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3_600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3_600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

/** A plain text table, columns padded to their widest cell; a QUEUE column when the rows name their queue (QUEUE_SHARDS > 1). */
export function table(rows: readonly DeadLetterSummary[]): string {
  const sharded = rows.some((r) => r.queue !== undefined);
  const head = ['ID', 'USER', 'KIND', 'ERRCODE', 'ATTEMPTS', 'AGE', ...(sharded ? ['QUEUE'] : []), 'REASON'];
  const cells = rows.map((r) => [r.id, r.user, r.kind, r.errcode === null ? '-' : String(r.errcode), String(r.attempts), age(r.ageSeconds), ...(sharded ? [r.queue ?? '?'] : []), r.reason]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]) => c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(widths[i]!))).join('  ');
  return [line(head), ...cells.map(line)].join('\n');
}

function showText(job: InboundDeadLetter, now: number, queue: string | undefined): string {
  const d = { ...detail(job, now), ...(queue === undefined ? {} : { queue }) };
  const p = d.progress;
  const rows: [string, string][] = [
    ['id', d.id],
    ...(d.queue === undefined ? [] : [['queue', d.queue] as [string, string]]),
    ['user', d.user],
    ['message', `${d.kind}: ${d.content}`],
    ['errcode', d.errcode === null ? '-' : String(d.errcode)],
    ['code', d.code ?? '-'],
    ['reason', d.reason],
    ['attempts', `${d.attempts} of ${d.maxAttempts}`],
    ['received', d.receivedAt ?? '?'],
    ['enqueued', d.enqueuedAt],
    ['started', d.startedAt ?? '-'],
    ['failed', `${d.failedAt ?? '?'} (${age(d.ageSeconds)} ago)`],
    ['answer', p.answerSaved ? 'saved (a retry does not ask the handler again)' : 'none saved'],
    ['parts', p.parts === null ? 'not planned' : `${p.sent} of ${p.parts} sent (a retry sends the rest)`],
    ...(p.answeredTogether > 0 ? [['together', `${p.answeredTogether} later message(s) of the user answered with it`] as [string, string]] : []),
  ];
  return rows.map(([k, v]) => `${k.padEnd(9)} ${v}`).join('\n');
}

async function confirm(io: CliIo, question: string): Promise<boolean> {
  const rl = createInterface({ input: io.stdin, output: io.stdout });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** One queue the dead letters are read from: a shard, named as operators see it (`QueueShard.name`). */
export interface DeadLetterQueue {
  readonly queue: Queue;
  readonly name: string;
}

/** A dead letter and the queue that holds it. */
interface Found {
  readonly job: InboundDeadLetter;
  readonly from: DeadLetterQueue;
}

async function findAll(queues: readonly DeadLetterQueue[], filter: DeadLetterFilter): Promise<Found[]> {
  const found: Found[] = [];
  for (const from of queues) for (const job of await findDeadLetters(from.queue, filter)) found.push({ job, from });
  // Newest first across the queues, as within one.
  return found.sort((a, b) => (b.job.finishedOn ?? 0) - (a.job.finishedOn ?? 0));
}

async function getOne(queues: readonly DeadLetterQueue[], id: string): Promise<Found | undefined> {
  for (const from of queues) {
    const job = await getDeadLetter(from.queue, id);
    if (job !== undefined) return { job, from };
  }
  return undefined;
}

/**
 * Runs one command against the inbound queue (`queues`: every shard in use; one without
 * QUEUE_SHARDS), writing to `io`; the exit code. With several queues each dead letter names its own.
 */
export async function runCommand(command: Command, queues: Queue | readonly DeadLetterQueue[], io: CliIo): Promise<number> {
  const all: readonly DeadLetterQueue[] = Array.isArray(queues) ? queues : [{ queue: queues as Queue, name: (queues as Queue).name }];
  const sharded = all.length > 1;
  const queueOf = (f: Found) => (sharded ? { queue: f.from.name } : {});
  const now = (io.now ?? Date.now)();
  const out = (text: string) => io.stdout.write(`${text}\n`);
  const err = (text: string) => io.stderr.write(`${text}\n`);
  switch (command.name) {
    case 'queues':
      throw new Error('queues is run by runCli (it reads Redis beyond the queues)');
    case 'list': {
      const rows = (await findAll(all, command.filter)).map((f) => ({ ...summarize(f.job, now), ...queueOf(f) }));
      if (command.json) out(JSON.stringify(rows, null, 2));
      else if (rows.length === 0) out('no dead letters');
      else out(table(rows));
      return EXIT.ok;
    }
    case 'show': {
      const found = await getOne(all, command.id);
      if (found === undefined) {
        err(`no dead letter "${command.id}"`);
        return EXIT.noMatch;
      }
      out(command.json ? JSON.stringify({ ...detail(found.job, now), ...queueOf(found) }, null, 2) : showText(found.job, now, sharded ? found.from.name : undefined));
      return EXIT.ok;
    }
    case 'retry':
    case 'drop': {
      let jobs: InboundDeadLetter[];
      if (command.id !== undefined) {
        const found = await getOne(all, command.id);
        if (found === undefined) {
          err(`no dead letter "${command.id}"`);
          return EXIT.noMatch;
        }
        jobs = [found.job];
      } else {
        // Oldest message first: a user's retried messages go back in the order they wrote them.
        jobs = (await findAll(all, command.filter)).map((f) => f.job).sort((a, b) => a.timestamp - b.timestamp);
      }
      if (command.name === 'drop' && jobs.length > 0 && !command.yes) {
        if (io.stdin.isTTY !== true) {
          err('dlq drop: not on a terminal, so nothing to confirm with: add --yes');
          return EXIT.usage;
        }
        if (!(await confirm(io, `Drop ${jobs.length} dead letter(s)? They cannot be retried afterwards. [y/N] `))) {
          out('nothing dropped');
          return EXIT.ok;
        }
      }
      const act = command.name === 'retry' ? retryDeadLetter : dropDeadLetter;
      const done: string[] = [];
      for (const job of jobs) {
        if (await act(job)) done.push(job.id ?? '?');
        else err(`${job.id ?? '?'}: no longer a dead letter (retried or removed meanwhile), left alone`);
      }
      const verb = command.name === 'retry' ? 'retried' : 'dropped';
      out(`${verb} ${done.length} dead letter(s)${done.length > 0 ? `: ${done.join(', ')}` : ''}`);
      return command.id !== undefined && done.length === 0 ? EXIT.noMatch : EXIT.ok;
    }
  }
}

/** One queue as `wxrelay queues` shows it. */
export interface QueueReport {
  readonly queue: string;
  /** `current` (QUEUE_SHARDS) or `also` (QUEUE_SHARDS_ALSO). */
  readonly layout: 'current' | 'also';
  readonly slot: number;
  /** The master serving the queue's slot (`host:port`) in a Redis Cluster; null otherwise. */
  readonly node: string | null;
  readonly waiting: number;
  readonly active: number;
  readonly delayed: number;
  readonly prioritized: number;
  readonly failed: number;
  readonly completed: number;
  /** Passive answers waiting in the queue's users' inboxes. */
  readonly inbox: number;
  /** Nothing left to answer: no waiting, active, delayed or prioritized job, no inbox answer. */
  readonly drained: boolean;
}

async function queueReports(redis: RedisClient, queues: readonly { queue: Queue; shard: QueueShard; layout: 'current' | 'also' }[]): Promise<QueueReport[]> {
  const slots = isCluster(redis) ? ((await redis.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, ...unknown[]], ...unknown[]][]) : undefined;
  const reports: QueueReport[] = [];
  for (const { queue, shard, layout } of queues) {
    const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed', 'completed');
    const n = (state: string) => Number(c[state] ?? 0);
    const inbox = await redis.zcard(answerKeys(shard.jobPrefix).due);
    const slot = keySlot(shard.prefix);
    const owner = slots?.find(([from, to]) => slot >= from && slot <= to)?.[2];
    reports.push({
      queue: shard.name,
      layout,
      slot,
      node: owner === undefined ? null : `${String(owner[0])}:${String(owner[1])}`,
      waiting: n('waiting'),
      active: n('active'),
      delayed: n('delayed'),
      prioritized: n('prioritized'),
      failed: n('failed'),
      completed: n('completed'),
      inbox,
      drained: n('waiting') + n('active') + n('delayed') + n('prioritized') + inbox === 0,
    });
  }
  return reports;
}

function queuesTable(rows: readonly QueueReport[]): string {
  const head = ['QUEUE', 'LAYOUT', 'SLOT', 'NODE', 'WAITING', 'ACTIVE', 'DELAYED', 'FAILED', 'INBOX', 'DRAINED'];
  const cells = rows.map((r) => [r.queue, r.layout, String(r.slot), r.node ?? '-', String(r.waiting), String(r.active), String(r.delayed + r.prioritized), String(r.failed), String(r.inbox), r.drained ? 'yes' : 'no']);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]) => c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(widths[i]!))).join('  ');
  return [line(head), ...cells.map(line)].join('\n');
}

/** The whole command line: parse, connect, run, close. The exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const now = (io.now ?? Date.now)();
  let command: Command;
  try {
    command = parseCommand(argv, now);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    if (e.message !== '') io.stderr.write(`wxrelay: ${e.message}\n\n`);
    (e.message === '' ? io.stdout : io.stderr).write(`${USAGE}\n`);
    return e.message === '' ? EXIT.ok : EXIT.usage;
  }
  let config;
  try {
    config = loadCliConfig(io.env);
  } catch (e) {
    io.stderr.write(`wxrelay: ${e instanceof WxError ? e.message : String(e)}\n`);
    return EXIT.usage;
  }
  // Fails fast instead of retrying for ever: a command line, not a service.
  const redis = createRedisConnection(config.redis, 'cli');
  let redisError: Error | undefined;
  redis.on('error', (e: Error) => (redisError = e)); // reported below, once
  const queues: (DeadLetterQueue & { shard: QueueShard; layout: 'current' | 'also' })[] = [];
  try {
    await redis.connect().catch((e: unknown) => {
      throw new Error(`cannot reach Redis: ${redisError?.message ?? (e instanceof Error ? e.message : String(e))}`);
    });
    // Every queue in use: each shard of QUEUE_SHARDS, and of QUEUE_SHARDS_ALSO while it changes.
    // skipMetasUpdate: a reader does not write the queue's meta (the producer's event-stream cap).
    const layouts = queueLayouts(config.queuePrefix, config.queueShards.count, config.queueShards.also, INBOUND_QUEUE);
    for (const shard of layouts.all) {
      const queue = new Queue(shard.queueName, { connection: redis, prefix: shard.prefix, skipMetasUpdate: true });
      queue.on('error', () => undefined);
      queues.push({ queue, name: shard.name, shard, layout: layouts.current.queues.includes(shard) ? 'current' : 'also' });
    }
    if (command.name === 'queues') {
      const rows = await queueReports(redis, queues);
      io.stdout.write(`${command.json ? JSON.stringify(rows, null, 2) : queuesTable(rows)}\n`);
      return EXIT.ok;
    }
    return await runCommand(command, queues, io);
  } catch (e) {
    io.stderr.write(`wxrelay: ${e instanceof Error ? e.message : String(e)} (Redis ${describeRedisTopology(config.redis)}, queue prefix ${config.queuePrefix})\n`);
    return EXIT.failed;
  } finally {
    for (const { queue } of queues) await queue.close().catch(() => undefined);
    redis.disconnect();
  }
}

/**
 * Scenario 10: what one message costs each part, measured apart, for the capacity model (issue #14).
 *
 * A burst of keyword replies (each message from its own user, a rule answering at once) is sent
 * in two phases, so each side's cost is read alone:
 *
 * 1. **Gateway side.** The inbound queue is paused (BullMQ's own pause: the gateway's add puts
 *    jobs in `paused`), the burst goes through the gateway as fast as it acks (closed loop). CPU
 *    of the gateway, of Redis and of the load generator; Redis commands (INFO commandstats) and
 *    memory (`used_memory`) per queued message.
 * 2. **Worker side.** The queue is resumed and the workers (already running and warm) drain the
 *    backlog into the fake WeChat API. CPU of the workers, of Redis and of the fake API; Redis
 *    commands per message; drain rate from the resume to the last send; what Redis still holds per
 *    message once every job is done (dedup keys and the like, until their TTL).
 *
 * Every number is ÷ messages; CPU from /proc (user + system). The same is done with 1 and with 2
 * worker processes; the capacity model in the README is computed from these figures.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { DEFAULT_JOB_OPTIONS, DEFAULT_QUEUE_PREFIX, INBOUND_QUEUE } from '@wxrelay/shared';
import { REPO_ROOT } from '@wxrelay/testkit';
import type { BenchRedis, Fakes, Server } from '../infra.ts';
import { BENCH_SRC, startWorkers, stopAll } from '../infra.ts';
import { runClosedLoop } from '../load/http-load.ts';
import { log } from '../log.ts';
import { perUserRequests } from '../payloads.ts';
import { cpuSeconds, machineBusySeconds, spawnNode, type Child } from '../procs.ts';
import type { Settings } from '../settings.ts';
import { median } from '../stats.ts';
import { RUNS_DIR } from './closed-loop.ts';

/** The keyword every burst message starts with, and the rule's fixed answer. */
const KEYWORD = 'bench';
const ANSWER = '营业时间：每天 9:00–21:00';

export interface SideCost {
  /** CPU µs per message, by process. */
  readonly cpuUs: Readonly<Record<string, number>>;
  /** Redis commands per message (commands run inside scripts counted too; INFO left out). */
  readonly redisCommands: number;
  /** Of those, script calls (EVALSHA / EVAL / FCALL) per message. */
  readonly redisScripts: number;
  /** The longest Redis call of the phase (SLOWLOG, calls over 1 ms), µs, and what it was; 0 if none took 1 ms. */
  readonly longestCallUs: number;
  readonly longestCall: string;
  /** Per message, by command (the ten most frequent). */
  readonly redisTop: Readonly<Record<string, number>>;
  /** The machine's busy cores during the phase, and those not of the bench's processes. */
  readonly machineCores: number;
  readonly otherCores: number;
  readonly seconds: number;
}

export interface CapacityRun {
  readonly workers: number;
  readonly messages: number;
  readonly ackErrors: number;
  /** Distinct users answered by the fake API (every message has its own user). */
  readonly usersAnswered: number;
  readonly gatewaySide: SideCost;
  readonly workerSide: SideCost;
  /** Burst acked by the gateway: msg/s over the phase. */
  readonly enqueueRate: number;
  /** Backlog drained by the workers: msg/s from the resume to the last send. */
  readonly drainRate: number;
  /** Redis used_memory growth ÷ messages with the burst queued (bytes). */
  readonly memoryPerQueuedBytes: number;
  /** Redis used_memory over the empty baseline ÷ messages once every job is done (bytes). */
  readonly memoryPerDoneBytes: number;
  readonly load1: number;
}

/** The same backlog drained by plain BullMQ workers with a no-op processor (BullMQ's own cost). */
export interface FloorRun {
  readonly workers: number;
  readonly messages: number;
  readonly side: SideCost;
  readonly drainRate: number;
}

export interface CapacityResult {
  readonly concurrency: number;
  readonly messages: number;
  readonly runs: CapacityRun[];
  readonly floor: FloorRun[];
}

interface Snapshot {
  readonly at: number;
  readonly cpu: Record<string, number>;
  readonly calls: Map<string, number>;
  readonly machine: number;
}

async function commandCalls(client: Redis): Promise<Map<string, number>> {
  const text = await client.info('commandstats');
  const calls = new Map<string, number>();
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return calls;
}

async function usedMemory(client: Redis): Promise<number> {
  return Number(/^used_memory:(\d+)/m.exec(await client.info('memory'))?.[1]);
}

const SLOW_US = 1000;

/** Starts recording every Redis call over {@link SLOW_US} (the bench's own Redis, restored by {@link longestCall}). */
async function recordSlowCalls(redis: BenchRedis): Promise<void> {
  await redis.client.config('SET', 'slowlog-log-slower-than', String(SLOW_US));
  await redis.client.config('SET', 'slowlog-max-len', '1000');
  await redis.client.slowlog('RESET');
}

/** The longest call recorded since {@link recordSlowCalls}: µs, and the command with its first key (a script: its first key). */
async function longestCall(redis: BenchRedis): Promise<{ us: number; what: string }> {
  const entries = (await redis.client.slowlog('GET', 1000)) as [number, number, number, string[]][];
  await redis.client.config('SET', 'slowlog-log-slower-than', '10000');
  let best: { us: number; what: string } = { us: 0, what: '' };
  for (const [, , us, args] of entries) {
    if (us <= best.us) continue;
    const name = (args[0] ?? '').toLowerCase();
    const firstKey = name === 'evalsha' || name === 'eval' ? args[3] : args[1];
    // Keys name users (openids): keep the key's shape, not the user.
    best = { us, what: `${name} ${(firstKey ?? '').replace(/^(wx:(?:turns|answered|inbox|ledger)[^:]*:.*:)[^:]+$/, '$1<openid>')}` };
  }
  return best;
}

async function snapshot(redis: BenchRedis, pids: Readonly<Record<string, readonly number[]>>): Promise<Snapshot> {
  const calls = await commandCalls(redis.client);
  const cpu: Record<string, number> = { generator: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6 };
  for (const [name, list] of Object.entries(pids)) cpu[name] = list.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  return { at: performance.now(), cpu, calls, machine: machineBusySeconds() };
}

function costBetween(a: Snapshot, b: Snapshot, messages: number, parts: readonly string[], longest: { us: number; what: string }): SideCost {
  const cpuUs: Record<string, number> = {};
  let ours = 0;
  for (const name of parts) {
    const used = b.cpu[name]! - a.cpu[name]!;
    ours += used;
    cpuUs[name] = (used * 1e6) / messages;
  }
  let commands = 0;
  let scripts = 0;
  const by: [string, number][] = [];
  for (const [name, n] of b.calls) {
    if (name === 'info') continue;
    const d = n - (a.calls.get(name) ?? 0);
    commands += d;
    if (d > 0) by.push([name, d / messages]);
    if (/^(evalsha|eval|evalsha_ro|eval_ro|fcall|fcall_ro)$/.test(name)) scripts += d;
  }
  const seconds = (b.at - a.at) / 1000;
  const machine = (b.machine - a.machine) / seconds;
  const redisTop = Object.fromEntries(by.sort((x, y) => y[1] - x[1]).slice(0, 12));
  return { cpuUs, redisCommands: commands / messages, redisScripts: scripts / messages, longestCallUs: longest.us, longestCall: longest.what, redisTop, machineCores: machine, otherCores: machine - ours / seconds, seconds };
}

async function oneRun(gateway: Server, redis: BenchRedis, fakes: Fakes, workers: number, concurrency: number, messages: number, rulesFile: string, tag: number): Promise<CapacityRun & { sampleData: string }> {
  await redis.reset();
  await fakes.reset();
  const children = await startWorkers(workers, redis.url, fakes.apiUrl, concurrency, undefined, [], () => ({ REPLY_RULES_FILE: rulesFile }));
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined);
  // skipMetasUpdate: the bench must not write the queue's meta (BullMQ's Queue would reset the event stream's cap the producer set, INBOUND_EVENTS_MAX_LEN).
  const queue = new Queue(INBOUND_QUEUE, { connection, prefix: DEFAULT_QUEUE_PREFIX, skipMetasUpdate: true });
  try {
    // Warm-up, unmeasured: the code of every process compiled, the access token fetched.
    const warm = Math.min(2000, messages);
    await runClosedLoop({ port: gateway.port, connections: 64, count: warm, makeRequest: perUserRequests(gateway.port, tag, 'oCapW', KEYWORD) });
    await fakes.collect(warm, 60_000);
    await queue.pause();
    await fakes.reset();
    await delay(200);
    const baseMemory = await usedMemory(redis.client);
    const pids = { gateway: [gateway.child.pid], redis: [redis.pid], workers: children.map((c) => c.pid), fakes: [fakes.pid] };

    await recordSlowCalls(redis);
    const a = await snapshot(redis, pids);
    const r = await runClosedLoop({ port: gateway.port, connections: 64, count: messages, makeRequest: perUserRequests(gateway.port, tag + 1, 'oCap', KEYWORD) });
    const b = await snapshot(redis, pids);
    const gatewayLongest = await longestCall(redis);
    const queuedMemory = await usedMemory(redis.client);
    const queueKey = `${DEFAULT_QUEUE_PREFIX}:${INBOUND_QUEUE}:`;
    const sampleId = (await redis.client.lrange(`${queueKey}paused`, 0, 0))[0];
    const sampleData = sampleId === undefined ? '{}' : ((await redis.client.hget(queueKey + sampleId, 'data')) ?? '{}');

    await recordSlowCalls(redis);
    const c = await snapshot(redis, pids);
    const resumedAt = performance.now();
    await queue.resume();
    const got = await fakes.collect(messages, 300_000);
    const d = await snapshot(redis, pids);
    const workerLongest = await longestCall(redis);
    // From the resume to the fakes child's answer that it has every send (its IPC, a few ms, included).
    const drainS = (d.at - resumedAt) / 1000;
    await delay(300);
    const doneMemory = await usedMemory(redis.client);
    const gatewaySide = costBetween(a, b, messages, ['gateway', 'redis', 'generator', 'workers', 'fakes'], gatewayLongest);
    const workerSide = costBetween(c, d, messages, ['workers', 'redis', 'fakes', 'gateway', 'generator'], workerLongest);
    return {
      workers,
      messages,
      ackErrors: r.errors,
      usersAnswered: got.users,
      gatewaySide,
      workerSide,
      enqueueRate: messages / gatewaySide.seconds,
      drainRate: got.total / drainS,
      memoryPerQueuedBytes: (queuedMemory - baseMemory) / messages,
      memoryPerDoneBytes: (doneMemory - baseMemory) / messages,
      load1: loadavg()[0]!,
      sampleData,
    };
  } finally {
    await queue.resume().catch(() => undefined);
    await queue.close();
    connection.disconnect();
    await stopAll(children);
  }
}

const FLOOR_QUEUE = 'bullmq-floor';

function waitForLine(child: Child, line: string, timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const deadline = Date.now() + timeoutMs;
    const check = (): void => {
      if (child.output().includes(`${line}\n`)) return resolvePromise();
      if (child.proc.exitCode !== null || Date.now() > deadline) return reject(new Error(`${child.name} did not print ${line}:\n${child.output()}`));
      setTimeout(check, 20);
    };
    check();
  });
}

async function floorRun(redis: BenchRedis, workers: number, concurrency: number, messages: number, sampleData: string): Promise<FloorRun> {
  await redis.reset();
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined);
  const queue = new Queue(FLOOR_QUEUE, { connection, prefix: DEFAULT_QUEUE_PREFIX });
  const children: Child[] = [];
  try {
    await queue.pause();
    const data = JSON.parse(sampleData) as object;
    for (let i = 0; i < messages; i += 1000) {
      await queue.addBulk(Array.from({ length: Math.min(1000, messages - i) }, () => ({ name: 'inbound', data, opts: DEFAULT_JOB_OPTIONS })));
    }
    for (let i = 0; i < workers; i++) {
      children.push(
        spawnNode({
          name: `bullmq floor ${i + 1}`,
          entry: resolve(BENCH_SRC, 'servers', 'bare-bullmq-worker.ts'),
          env: { REDIS_URL: redis.url, QUEUE_PREFIX: DEFAULT_QUEUE_PREFIX, QUEUE_NAME: FLOOR_QUEUE, CONCURRENCY: String(concurrency) },
          cwd: REPO_ROOT,
        }),
      );
    }
    for (const c of children) await waitForLine(c, 'ready', 20_000);
    await delay(200);
    const pids = { workers: children.map((c) => c.pid), redis: [redis.pid] };
    const completedKey = `${DEFAULT_QUEUE_PREFIX}:${FLOOR_QUEUE}:completed`;
    await recordSlowCalls(redis);
    const a = await snapshot(redis, pids);
    await queue.resume();
    // Completed jobs are kept (JOB_RETENTION), so their count says when the backlog is drained;
    // the polls' own ZCARDs are taken off below.
    let polls = 0;
    const deadline = Date.now() + 300_000;
    while ((await redis.client.zcard(completedKey)) < messages && Date.now() < deadline) {
      polls += 1;
      await delay(10);
    }
    const b = await snapshot(redis, pids);
    const side = costBetween(a, b, messages, ['workers', 'redis'], await longestCall(redis));
    const zcards = side.redisTop.zcard;
    const redisTop = { ...side.redisTop, ...(zcards === undefined ? {} : { zcard: zcards - (polls + 1) / messages }) };
    return { workers, messages, side: { ...side, redisCommands: side.redisCommands - (polls + 1) / messages, redisTop }, drainRate: messages / side.seconds };
  } finally {
    await stopAll(children);
    await queue.close();
    connection.disconnect();
  }
}

export async function runCapacityScenario(gateway: Server, redis: BenchRedis, fakes: Fakes, settings: Settings, runTagBase: number): Promise<CapacityResult> {
  const s = settings.capacity;
  mkdirSync(RUNS_DIR, { recursive: true });
  const rulesFile = resolve(RUNS_DIR, 'capacity-rules.yaml');
  writeFileSync(rulesFile, `rules:\n  - name: bench keyword\n    match: { msgType: text, content: { regex: '^${KEYWORD}' } }\n    reply: ${JSON.stringify(ANSWER)}\n`);
  const runs: CapacityRun[] = [];
  const floor: FloorRun[] = [];
  let tag = runTagBase;
  for (const workers of s.workerCounts) {
    for (let run = 0; run < s.runs; run++) {
      const { sampleData, ...r } = await oneRun(gateway, redis, fakes, workers, s.concurrency, s.messages, rulesFile, tag);
      tag += 2;
      runs.push(r);
      const f = await floorRun(redis, workers, s.concurrency, s.messages, sampleData);
      floor.push(f);
      const us = (side: SideCost): string =>
        Object.entries(side.cpuUs)
          .map(([k, v]) => `${k} ${v.toFixed(0)}`)
          .join(', ');
      log(
        `  ${workers} worker(s) run ${run + 1}: enqueue ${r.enqueueRate.toFixed(0)} msg/s (µs/msg: ${us(r.gatewaySide)}; Redis ${r.gatewaySide.redisCommands.toFixed(1)} cmds/msg), ` +
          `drain ${r.drainRate.toFixed(0)} msg/s (µs/msg: ${us(r.workerSide)}; Redis ${r.workerSide.redisCommands.toFixed(1)} cmds/msg, ${r.workerSide.redisScripts.toFixed(2)} scripts/msg); ` +
          `memory ${r.memoryPerQueuedBytes.toFixed(0)} B/queued msg, ${r.memoryPerDoneBytes.toFixed(0)} B/done msg; users answered ${r.usersAnswered}/${r.messages}, ack errors ${r.ackErrors}; others ${r.gatewaySide.otherCores.toFixed(2)}/${r.workerSide.otherCores.toFixed(2)} cores; ` +
          `longest Redis call ${(r.gatewaySide.longestCallUs / 1000).toFixed(1)} ms (${r.gatewaySide.longestCall}) / ${(r.workerSide.longestCallUs / 1000).toFixed(1)} ms (${r.workerSide.longestCall})`,
      );
      log(
        `    Redis commands per message, gateway side: ${Object.entries(r.gatewaySide.redisTop).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}; ` +
          `worker side: ${Object.entries(r.workerSide.redisTop).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`,
      );
      log(
        `    plain BullMQ, no-op processor, same backlog: drain ${f.drainRate.toFixed(0)} msg/s (µs/msg: ${us(f.side)}; Redis ${f.side.redisCommands.toFixed(1)} cmds/msg, ${f.side.redisScripts.toFixed(2)} scripts/msg; longest Redis call ${(f.side.longestCallUs / 1000).toFixed(1)} ms)`,
      );
    }
  }
  await redis.reset();
  return { concurrency: s.concurrency, messages: s.messages, runs, floor };
}

/** The median of one field over the runs with `workers` worker processes. */
export function medianOf(result: CapacityResult, workers: number | undefined, pick: (r: CapacityRun) => number): number {
  return median(result.runs.filter((r) => workers === undefined || r.workers === workers).map(pick));
}

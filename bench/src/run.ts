/**
 * One bench run: the processes, the eight scenarios, the targets, profiles of what missed, and the
 * two result files.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { REPO_ROOT } from '@wxrelay/testkit';
import {
  BENCH_SRC,
  startBenchRedis,
  startFakes,
  startGateway,
  startPeer,
  startWorkers,
  stopAll,
  REDIS_ARGS,
  type BenchRedis,
  type Fakes,
  type Server,
} from './infra.ts';
import { runOpenLoop } from './load/http-load.ts';
import { log } from './log.ts';
import { perUserRequests, plainQuery, sameUserRequests, textTemplate } from './payloads.ts';
import { profileInProcess, readProfileFrom, summarizeProfile, type ProfileSummary } from './profile.ts';
import { writeReport } from './report.ts';
import { runClosedLoopScenario, RUNS_DIR, type ClosedScenarioResult, type ClosedServers } from './scenarios/closed-loop.ts';
import { runEndToEndScenario, type E2eWorkersResult } from './scenarios/end-to-end.ts';
import { runMicroScenario, verifyAndParseCase, type MicroResult } from './scenarios/micro.ts';
import { runDurabilityScenario, type DurabilityResult } from './scenarios/durability.ts';
import { runAckReplicasScenario, type AcksResult } from './scenarios/ack-replicas.ts';
import { runCapacityScenario, type CapacityResult } from './scenarios/capacity.ts';
import { runOpenLoopScenario, type OpenRateResult } from './scenarios/open-loop.ts';
import { runRepliesScenario, type RepliesResult } from './scenarios/replies.ts';
import { runBurstCeiling, runSlowHandlerScenario, type BurstCeiling, type SlowConfigResult } from './scenarios/slow-handler.ts';
import { FULL, gatewayEnv, QUICK, workerEnv, type Settings } from './settings.ts';
import { runWrk, wrkVersion } from './wrk.ts';
import { median } from './stats.ts';

export interface BenchOptions {
  /** The command line, for RESULTS.md. */
  readonly command: string;
  /** Only re-render RESULTS.md from results.json (and analysis.md). */
  readonly reportOnly: boolean;
  readonly quick: boolean;
  readonly only: ReadonlySet<number>;
  readonly profile: boolean;
}

/** Every scenario's number. */
const ALL_SCENARIOS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] as const;

/** Scenario names `--only` also takes (`--only=durability`, `--only=1,durability`). */
export const SCENARIO_NAMES: Readonly<Record<string, number>> = {
  closed: 1,
  safe: 2,
  open: 3,
  e2e: 4,
  slow: 5,
  micro: 6,
  durability: 7,
  replies: 8,
  acks: 9,
  capacity: 10,
};

export function parseArgs(argv: readonly string[]): BenchOptions {
  const only = argv.find((a) => a.startsWith('--only='));
  const scenarios =
    only === undefined
      ? [...ALL_SCENARIOS]
      : only
          .slice(7)
          .split(',')
          .map((s) => SCENARIO_NAMES[s.trim()] ?? Number(s));
  const unknown = scenarios.filter((n) => !Number.isInteger(n) || n < 1 || n > ALL_SCENARIOS.length);
  if (unknown.length > 0 || scenarios.length === 0) {
    throw new Error(`--only takes scenario numbers 1–${ALL_SCENARIOS.length} or names (${Object.keys(SCENARIO_NAMES).join(', ')}): ${only ?? ''}`);
  }
  return {
    command: ['pnpm bench', ...argv].join(' '),
    reportOnly: argv.includes('--report-only'),
    quick: argv.includes('--quick'),
    only: new Set(scenarios),
    profile: argv.includes('--profile'),
  };
}

export interface Target {
  readonly name: string;
  readonly threshold: string;
  readonly value: string;
  /** undefined when its scenario did not run. */
  readonly met: boolean | undefined;
}

export interface BenchResults {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationS: number;
  /** The command that produced the run (absent in results written before it was recorded). */
  readonly command?: string;
  readonly quick: boolean;
  readonly machine: Record<string, string>;
  readonly versions: Record<string, string>;
  readonly git: { readonly commit: string; readonly dirty: string[] };
  readonly settings: Settings;
  readonly env: { readonly gateway: Record<string, string>; readonly worker: Record<string, string>; readonly redisArgs: readonly string[] };
  readonly load: { readonly before: number[]; readonly after: number[] };
  readonly micro?: MicroResult[];
  readonly closed: { plain?: ClosedScenarioResult; safe?: ClosedScenarioResult };
  readonly open?: OpenRateResult[];
  readonly e2e?: E2eWorkersResult[];
  readonly slow?: SlowConfigResult[];
  /** Scenario 5's burst against bare fastify (the machine's ceiling for it). */
  readonly slowCeiling?: BurstCeiling;
  /** Scenario 7: the closed loop with appendfsync always vs everysec. */
  readonly durability?: DurabilityResult;
  /** Scenario 8: reply channels (REPLY_MODE passive and auto beside customer-service). */
  readonly replies?: RepliesResult;
  /** Scenario 9: the closed loop with REDIS_ACK_REPLICAS=1 vs 0 (a local replica); its earlier runs, newest first. */
  readonly acks?: AcksResult;
  readonly acksEarlier?: AcksResult[];
  /** Scenario 10: each side's cost per message and the drain of a queued burst (the capacity model's figures). */
  readonly capacity?: CapacityResult;
  readonly targets: Target[];
  readonly profiles: ProfileSummary[];
  readonly notes: string[];
  /**
   * Scenarios this run did not measure (`--only`) whose results come from an earlier run, by
   * scenario number: when and at which commit they were measured.
   */
  readonly carried?: Readonly<Record<string, { readonly startedAt: string; readonly commit: string }>>;
}

/** Which scenario a target belongs to (for the console's "earlier run" mark). */
function scenarioOfTarget(t: Target): number {
  if (t.name.startsWith('gateway req/s')) return 1;
  if (t.name.startsWith('ack p99')) return 3;
  if (t.name.startsWith('end-to-end')) return 4;
  if (t.name.startsWith('verify + parse')) return 6;
  if (t.name.startsWith('slow handler')) return 5;
  if (t.name.startsWith('burst drain')) return 10;
  return 8;
}

/** The notes of a run, from the scenarios that leave any. */
function notesOf(r: Pick<BenchResults, 'closed' | 'durability' | 'replies'>): string[] {
  return [...(r.closed.plain?.notes ?? []), ...(r.closed.safe?.notes ?? []), ...(r.durability?.notes ?? []), ...(r.replies?.notes ?? [])];
}

/**
 * A partial run (`--only`) keeps, from the previous results.json of the same kind (full or quick),
 * the results of the scenarios it did not measure, so RESULTS.md stays whole; `carried` says which
 * and from when, and the report prints it. Targets and notes are taken over the whole.
 */
export function carryOver(current: BenchResults, previous: BenchResults | undefined): BenchResults {
  if (previous === undefined || previous.quick !== current.quick) return current;
  const carried: Record<string, { startedAt: string; commit: string }> = {};
  const origin = (scenario: number): { startedAt: string; commit: string } => previous.carried?.[scenario] ?? { startedAt: previous.startedAt, commit: previous.git.commit };
  const pick = <T>(scenario: number, mine: T | undefined, theirs: T | undefined): T | undefined => {
    if (mine !== undefined || theirs === undefined) return mine;
    carried[scenario] = origin(scenario);
    return theirs;
  };
  const slow = pick(5, current.slow, previous.slow);
  const merged = {
    ...current,
    closed: { plain: pick(1, current.closed.plain, previous.closed.plain), safe: pick(2, current.closed.safe, previous.closed.safe) },
    open: pick(3, current.open, previous.open),
    e2e: pick(4, current.e2e, previous.e2e),
    slow,
    slowCeiling: current.slow === undefined ? previous.slowCeiling : current.slowCeiling,
    micro: pick(6, current.micro, previous.micro),
    durability: pick(7, current.durability, previous.durability),
    replies: pick(8, current.replies, previous.replies),
    acks: pick(9, current.acks, previous.acks),
    capacity: pick(10, current.capacity, previous.capacity),
    acksEarlier: current.acks !== undefined && previous.acks !== undefined ? [previous.acks, ...(previous.acksEarlier ?? [])].slice(0, 3) : previous.acksEarlier,
  };
  if (Object.keys(carried).length === 0) return current;
  return {
    ...merged,
    targets: evaluateTargets(merged),
    profiles: current.profiles.length > 0 ? current.profiles : previous.profiles,
    notes: notesOf(merged),
    carried,
  };
}

function packageVersion(dir: string, name: string): string {
  const file = resolve(REPO_ROOT, dir, 'node_modules', name, 'package.json');
  if (!existsSync(file)) return 'missing';
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

function machineInfo(): Record<string, string> {
  const cpu = cpus();
  return {
    cpu: cpu[0]?.model ?? 'unknown',
    cores: String(cpu.length),
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: release(),
    platform: `${process.platform} ${process.arch}`,
  };
}

function met(value: number, ok: (v: number) => boolean): boolean | undefined {
  return Number.isFinite(value) ? ok(value) : undefined;
}

export function evaluateTargets(r: Pick<BenchResults, 'closed' | 'open' | 'e2e' | 'micro' | 'slow' | 'slowCeiling' | 'replies' | 'capacity' | 'settings'>): Target[] {
  const plain = r.closed.plain;
  const vsCo = plain?.ratios['co-wechat (koa)'] ?? Number.NaN;
  const vsBare = plain?.ratios['bare fastify'] ?? Number.NaN;
  const at5k = r.open?.find((o) => o.rate === 5000)?.ack.p99 ?? Number.NaN;
  const e2e = r.e2e?.find((e) => e.workers === 1)?.e2e.p50 ?? Number.NaN;
  const vp = r.micro?.find((m) => m.impl === 'ours' && m.name === 'verify + parse (text)')?.us ?? Number.NaN;
  const slowAck = r.slow === undefined || r.slow.length === 0 ? Number.NaN : Math.min(...r.slow.map((s) => s.maxAckFromBurstMs));
  const slowAll = r.slow?.some((s) => s.sufficed);
  const users = r.settings.replies.users;
  const firstAnswers = r.replies?.passive.filter((b) => b.llmDelayMs === r.settings.replies.llmDelaysMs[0]).map((b) => b.firstAttemptAnswers) ?? [];
  // ∞ (a run with no passive answer) comes back from results.json as null.
  const autoP50 = r.replies === undefined ? Number.NaN : ((r.replies.autoPassiveP50Ms as number | null) ?? Number.POSITIVE_INFINITY);
  const autoRate = r.settings.replies.auto.rates[0] ?? 0;
  const autoRuns = r.replies?.auto.filter((a) => a.rate === autoRate) ?? [];
  const f0 = (v: number): string => v.toFixed(v % 1 === 0 ? 0 : 1);
  const drainBy = (n: number): number => {
    const rates = r.capacity?.runs.filter((x) => x.workers === n).map((x) => x.drainRate) ?? [];
    return rates.length === 0 ? Number.NaN : median(rates);
  };
  const drainCounts = r.capacity === undefined ? [] : [...new Set(r.capacity.runs.map((x) => x.workers))];
  const bestDrain = drainCounts.length === 0 ? Number.NaN : Math.max(...drainCounts.map(drainBy));
  return [
    { name: 'gateway req/s ≥ 2× co-wechat (plain, closed loop)', threshold: '≥ 2.00×', value: `${vsCo.toFixed(2)}×`, met: met(vsCo, (v) => v >= 2) },
    { name: 'gateway req/s ≥ 35 % of bare fastify (plain, closed loop)', threshold: '≥ 35 %', value: `${(vsBare * 100).toFixed(1)} %`, met: met(vsBare, (v) => v >= 0.35) },
    { name: 'ack p99 ≤ 10 ms at 5 k msg/s (open loop)', threshold: '≤ 10 ms', value: `${at5k.toFixed(2)} ms`, met: met(at5k, (v) => v <= 10) },
    { name: 'end-to-end p50 ≤ 10 ms at 1 k msg/s, no-op handler (1 worker)', threshold: '≤ 10 ms', value: `${e2e.toFixed(2)} ms`, met: met(e2e, (v) => v <= 10) },
    { name: 'verify + parse ≤ 10 µs per text message', threshold: '≤ 10 µs', value: `${vp.toFixed(2)} µs`, met: met(vp, (v) => v <= 10) },
    {
      name: 'slow handler: every ack < 50 ms with 1,000 users at once (best layout)',
      threshold: '< 50 ms',
      value: `${slowAck.toFixed(1)} ms${r.slowCeiling === undefined ? '' : ` (bare fastify, same burst: ${r.slowCeiling.maxAckFromBurstMs.toFixed(1)} ms)`}`,
      met: met(slowAck, (v) => v < 50),
    },
    { name: 'slow handler: every user answered within one LLM round (some layout)', threshold: 'all', value: slowAll === undefined ? 'n/a' : slowAll ? 'yes' : 'no', met: slowAll },
    {
      name: `passive replies: every user of ${users} at once answered on the first request (LLM ${f0(r.settings.replies.llmDelaysMs[0]! / 1000)} s)`,
      threshold: 'all',
      value: r.replies === undefined ? 'n/a' : `${Math.min(...firstAnswers)} / ${users} (worst run)`,
      met: r.replies === undefined ? undefined : Math.min(...firstAnswers) === users,
    },
    {
      name: `auto replies: passive answer p50 ≤ 5 ms at ${autoRate / 1000} k msg/s, keyword rule (median of runs)`,
      threshold: '≤ 5 ms',
      value:
        r.replies === undefined
          ? 'n/a'
          : `${Number.isFinite(autoP50) ? `${autoP50.toFixed(2)} ms` : '∞'} (runs: ${autoRuns.map((a) => `${a.passive === 0 ? '—' : `${a.passiveLatency.p50.toFixed(2)} ms`}, ${((a.passive / a.sent) * 100).toFixed(0)} % passive`).join('; ')})`,
      met: r.replies === undefined || Number.isNaN(autoP50) ? undefined : autoP50 <= 5,
    },
    {
      name: `burst drain: ${(r.settings.capacity?.messages ?? 20_000).toLocaleString('en-US')} queued keyword replies at ≥ 6,200 msg/s (2× the 3,100 of before #14), 1 or 2 workers`,
      threshold: '≥ 6,200 msg/s',
      value: Number.isNaN(bestDrain) ? 'n/a' : `${Math.round(bestDrain)} msg/s (${drainCounts.map((n) => `${n} worker${n === 1 ? '' : 's'}: ${Math.round(drainBy(n))}`).join(', ')})`,
      met: met(bestDrain, (v) => v >= 6200),
    },
  ];
}

/**
 * A fresh gateway under `--cpu-prof`, loaded either by wrk (closed loop, the throughput targets)
 * or by the open-loop generator at the highest rate (the ack-latency target), then stopped so V8
 * writes the profile. The startup's samples are left out.
 */
async function profileGateway(redis: BenchRedis, settings: Settings, load: 'closed' | 'open'): Promise<ProfileSummary> {
  const dir = resolve(RUNS_DIR, `prof-gateway-${load}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await redis.reset();
  const spawned = performance.now();
  const gw = await startGateway(redis.url, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200']);
  const startupMs = performance.now() - spawned;
  let label: string;
  if (load === 'closed') {
    const { head, tail } = textTemplate();
    const r = await runWrk({ port: gw.port, script: 'plain.lua', args: [plainQuery().path, head, tail, '990'], connections: settings.closed.connections, threads: settings.closed.threads, durationS: settings.closed.durationS });
    label = `gateway, plain mode, closed loop ${settings.closed.connections} connections (${r.reqPerSec.toFixed(0)} req/s under the profiler; startup left out)`;
  } else {
    const rate = Math.max(...settings.open.rates);
    await runOpenLoop({ port: gw.port, connections: settings.open.connections, rate, count: rate * settings.open.durationS, makeRequest: sameUserRequests(gw.port, 992) });
    label = `gateway, plain mode, open loop ${rate} msg/s for ${settings.open.durationS} s (startup left out)`;
  }
  await gw.child.stop();
  await redis.reset();
  log(`  ${label}`);
  return summarizeProfile(readProfileFrom(dir), label, startupMs);
}

/** One worker under `--cpu-prof` at the end-to-end rate. */
async function profileWorker(gateway: Server, redis: BenchRedis, fakes: Fakes, settings: Settings): Promise<ProfileSummary> {
  const dir = resolve(RUNS_DIR, 'prof-worker');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await redis.reset();
  await fakes.reset();
  const spawned = performance.now();
  const workers = await startWorkers(1, redis.url, fakes.apiUrl, settings.e2e.concurrency, undefined, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200']);
  const startupMs = performance.now() - spawned;
  const count = settings.e2e.rate * settings.e2e.durationS;
  await runOpenLoop({ port: gateway.port, connections: 64, rate: settings.e2e.rate, count, makeRequest: perUserRequests(gateway.port, 991, 'oProf') });
  await fakes.collect(count, 60_000);
  await stopAll(workers);
  await redis.reset();
  return summarizeProfile(readProfileFrom(dir), `worker (1 process, concurrency ${settings.e2e.concurrency}), echo handler, ${settings.e2e.rate} msg/s for ${settings.e2e.durationS} s (startup left out)`, startupMs);
}

const BENCH_DIR = resolve(BENCH_SRC, '..');

/**
 * A run of some scenarios (`--only`) replaces their sections in the last full results and keeps the
 * others (with the header of the run that measured them), so that RESULTS.md keeps every section.
 * A quick run, or one with no earlier full results, is written as it is.
 */
function readAnalysis(): string | undefined {
  const file = resolve(BENCH_DIR, 'analysis.md');
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

export async function runBench(opts: BenchOptions): Promise<void> {
  if (opts.reportOnly) {
    const results = JSON.parse(readFileSync(resolve(BENCH_DIR, 'results.json'), 'utf8')) as BenchResults;
    writeFileSync(resolve(BENCH_DIR, 'RESULTS.md'), writeReport(results, readAnalysis()));
    log('re-rendered RESULTS.md from results.json');
    return;
  }
  const settings = opts.quick ? QUICK : FULL;
  const started = new Date();
  const loadBefore = loadavg();
  log(`load average before: ${loadBefore.map((l) => l.toFixed(2)).join(' ')} on ${cpus().length} cores${opts.quick ? ' (quick mode)' : ''}`);
  const notes: string[] = [];
  const profiles: ProfileSummary[] = [];
  const closed: BenchResults['closed'] = {};
  let micro: MicroResult[] | undefined;
  let open: OpenRateResult[] | undefined;
  let e2e: E2eWorkersResult[] | undefined;
  let slow: SlowConfigResult[] | undefined;
  let slowCeiling: BurstCeiling | undefined;
  let durability: DurabilityResult | undefined;
  let replies: RepliesResult | undefined;
  let acks: AcksResult | undefined;
  let capacity: CapacityResult | undefined;

  // Micro-benchmarks first, while no child process competes for the cores.
  if (opts.only.has(6)) {
    log('scenario 6: protocol micro-benchmarks');
    micro = await runMicroScenario(settings);
  }

  const redis = await startBenchRedis();
  const children: Server[] = [];
  let fakes: Fakes | undefined;
  try {
    const gateway = await startGateway(redis.url);
    children.push(gateway);
    if (opts.only.has(1) || opts.only.has(2)) {
      const servers: ClosedServers = {
        bare: await startPeer('bare-fastify'),
        coWechat: await startPeer('co-wechat'),
        wechat: await startPeer('wechat-express'),
        gateway,
      };
      children.push(servers.bare, servers.coWechat, servers.wechat);
      if (opts.only.has(1)) {
        log('scenario 1: closed loop, plain mode');
        closed.plain = await runClosedLoopScenario('plain', servers, redis, settings, 100);
      }
      if (opts.only.has(2)) {
        log('scenario 2: closed loop, safe mode');
        closed.safe = await runClosedLoopScenario('safe', servers, redis, settings, 200);
      }
      await stopAll([servers.bare.child, servers.coWechat.child, servers.wechat.child]);
    }
    if (opts.only.has(7)) {
      log('scenario 7: durable acks, appendfsync always vs everysec (closed loop, plain mode)');
      durability = await runDurabilityScenario(gateway, redis, settings, 700);
    }
    if (opts.only.has(9)) {
      log('scenario 9: acks that survive a failover, REDIS_ACK_REPLICAS=1 vs 0 with a local replica (closed loop, plain mode)');
      acks = await runAckReplicasScenario(redis, settings, 900, { command: opts.command, commit: git(['rev-parse', '--short', 'HEAD']), loadBefore, quick: opts.quick });
    }
    if (opts.only.has(3)) {
      log('scenario 3: open loop');
      open = await runOpenLoopScenario(gateway, redis, settings, 300);
    }
    if (opts.only.has(4) || opts.only.has(5) || opts.only.has(8) || opts.only.has(10)) fakes = await startFakes(settings.slow.llmDelayMs);
    if (opts.only.has(4) && fakes !== undefined) {
      log('scenario 4: end to end');
      e2e = await runEndToEndScenario(gateway, redis, fakes, settings, 400);
    }
    if (opts.only.has(10) && fakes !== undefined) {
      log('scenario 10: capacity — each side\'s cost per message (gateway with the queue paused, then the workers draining it)');
      capacity = await runCapacityScenario(gateway, redis, fakes, settings, 1000);
    }
    if (opts.only.has(5) && fakes !== undefined) {
      log('scenario 5: slow handler');
      const bare = await startPeer('bare-fastify');
      try {
        slowCeiling = await runBurstCeiling(bare, settings, 590);
      } finally {
        await bare.child.stop();
      }
      slow = await runSlowHandlerScenario(gateway, redis, fakes, settings, 500);
    }
    if (opts.only.has(8) && fakes !== undefined) {
      log('scenario 8: reply channels (REPLY_MODE passive, customer-service, auto)');
      replies = await runRepliesScenario(redis, fakes, settings, 800);
    }

    const targets = evaluateTargets({ closed, open, e2e, micro, slow, slowCeiling, replies, capacity, settings });
    const missed = (prefix: string): boolean => targets.some((t) => t.name.startsWith(prefix) && t.met === false);
    if (opts.profile || missed('gateway req/s')) {
      log('profiling the gateway under the closed loop (--cpu-prof)');
      profiles.push(await profileGateway(redis, settings, 'closed'));
    }
    if (opts.profile || missed('ack p99') || missed('slow handler: every ack')) {
      log('profiling the gateway under the open loop (--cpu-prof)');
      profiles.push(await profileGateway(redis, settings, 'open'));
    }
    if ((opts.profile || missed('end-to-end')) && fakes !== undefined) {
      log('profiling a worker (--cpu-prof)');
      profiles.push(await profileWorker(gateway, redis, fakes, settings));
    }
    if (opts.profile || missed('verify + parse')) {
      log('profiling verify + parse in process');
      profiles.push(await profileInProcess(verifyAndParseCase(), 2000, 'verify + parse of a text push (in process, 2 s loop)'));
    }

    notes.push(...notesOf({ closed, durability, replies }));
    const loadAfter = loadavg();
    log(`load average after: ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
    const finished = new Date();
    const dirty = git(['status', '--porcelain', '--', 'packages', 'services']).split('\n').filter((l) => l !== '');
    const measured: BenchResults = {
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      durationS: (finished.getTime() - started.getTime()) / 1000,
      command: opts.command,
      quick: opts.quick,
      machine: machineInfo(),
      versions: {
        node: process.version,
        redis: redis.version,
        wrk: wrkVersion() ?? 'missing',
        'fastify (gateway)': packageVersion('services/gateway', 'fastify'),
        'bullmq (gateway)': packageVersion('services/gateway', 'bullmq'),
        'ioredis (gateway)': packageVersion('services/gateway', 'ioredis'),
        'fast-xml-parser (shared)': packageVersion('packages/shared', 'fast-xml-parser'),
        'fastify (bare)': packageVersion('bench', 'fastify'),
        'co-wechat': packageVersion('bench', 'co-wechat'),
        koa: packageVersion('bench', 'koa'),
        wechat: packageVersion('bench', 'wechat'),
        express: packageVersion('bench', 'express'),
        'fast-xml-parser (bench)': packageVersion('bench', 'fast-xml-parser'),
        mitata: packageVersion('bench', 'mitata'),
      },
      git: { commit: git(['rev-parse', '--short', 'HEAD']), dirty },
      settings,
      env: {
        gateway: gatewayEnv('redis://127.0.0.1:<port>', 0),
        worker: workerEnv('redis://127.0.0.1:<port>', 'http://127.0.0.1:<fake api>', settings.e2e.concurrency),
        redisArgs: REDIS_ARGS,
      },
      load: { before: loadBefore, after: loadAfter },
      micro,
      closed,
      open,
      e2e,
      slow,
      slowCeiling,
      durability,
      replies,
      acks,
      capacity,
      targets,
      profiles,
      notes,
    };
    const previousFile = resolve(BENCH_DIR, 'results.json');
    const previous = existsSync(previousFile) ? (JSON.parse(readFileSync(previousFile, 'utf8')) as BenchResults) : undefined;
    const results = opts.only.size < ALL_SCENARIOS.length ? carryOver(measured, previous) : measured;
    writeFileSync(resolve(BENCH_DIR, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(resolve(BENCH_DIR, 'RESULTS.md'), writeReport(results, readAnalysis()));
    log(`wrote ${resolve(BENCH_DIR, 'RESULTS.md')} and results.json in ${results.durationS.toFixed(0)} s`);
    if (results.carried !== undefined) log(`kept the results of scenario(s) ${Object.keys(results.carried).join(', ')} from earlier runs (not measured now)`);
    for (const t of results.targets) log(`  ${t.met === undefined ? 'n/a ' : t.met ? 'MET ' : 'MISS'} ${t.name}: ${t.value}${results.carried?.[scenarioOfTarget(t)] === undefined ? '' : ' (earlier run)'}`);
  } finally {
    await fakes?.close();
    await stopAll(children.map((c) => c.child));
    await delay(100);
    await redis.close();
  }
}

/**
 * Scenario 8: reply channels (issue #12, `REPLY_MODE`).
 *
 * - Passive: 1,000 users write at once (1,000 connections, every signed plain-mode callback
 *   written in one synchronous loop, each from its own user); the fake LLM answers each after 2 s;
 *   the worker runs every LLM call at once (1 process, WORKER_CONCURRENCY=1000). The gateway holds
 *   the 1,000 requests and answers each with its passive reply. Measured: how many users got their
 *   own answer in the first request (WeChat would retry the rest), the answer latency as the
 *   client sees it, the gateway's RSS (/proc VmRSS) and live heap (heap used after a full GC forced
 *   over its inspector) before and while it holds, its `wxrelay_gateway_held_requests` (scraped),
 *   and Redis commands per message (INFO commandstats: every command Redis ran, those inside
 *   scripts included, less the background counted idle first) beside the same burst in
 *   customer-service mode. A second LLM time (0.5 s) repeats the passive burst with shorter holds:
 *   holding should cost a constant per message (the claim), not load per held second.
 * - Auto: a keyword rule answers at once; 1,000 msg/s on a fixed schedule (open loop) for 10 s, each
 *   message from its own user; the gateway holds each up to AUTO_HOLD_MS (its default, 300 ms) and
 *   answers passively when the answer is there, else `success` (the API then sends it). Measured:
 *   passive answer latency from each message's scheduled send, the share answered each way, req/s.
 *
 * Each mode gets its own gateway and worker (REPLY_MODE must agree), started on a flushed Redis.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { DEFAULT_QUEUE_PREFIX, INBOUND_QUEUE } from '@wxrelay/shared';
import { freePort } from '@wxrelay/testkit';
import type { BenchRedis, Fakes, Server } from '../infra.ts';
import { connectInspector, type Inspector } from '../inspector.ts';
import { startGateway, startWorkers, stopAll } from '../infra.ts';
import { runClosedLoop, runOpenLoop, type RawResponse } from '../load/http-load.ts';
import { log } from '../log.ts';
import { perUserOpenid, perUserRequests, perUserTexts } from '../payloads.ts';
import { cpuSeconds, machineBusySeconds, type Child } from '../procs.ts';
import type { RepliesSettings, Settings } from '../settings.ts';
import { median, nowMs, summarize, type LatencySummary } from '../stats.ts';
import { RUNS_DIR } from './closed-loop.ts';

export type ReplyMode = 'customer-service' | 'passive' | 'auto';

/** The keyword of the auto runs and the rule's fixed answer. */
export const AUTO_KEYWORD = '营业时间';
export const AUTO_ANSWER = '每天 9:00–21:00';
/** The gateway's AUTO_HOLD_MS in the auto runs (its default, written out so RESULTS.md can say it). */
export const AUTO_HOLD_MS = 300;

const MB = 2 ** 20;

/** How one callback was answered. */
type Outcome = 'answer-1' | 'answer-later' | 'placeholder' | 'success' | 'wrong-answer' | 'no-answer' | 'other';

export interface RedisCount {
  /** Snapshot before the burst → every job completed, s. */
  readonly windowS: number;
  /** Commands Redis ran in the window (INFO commandstats; inside scripts too; INFO and the bench's own polls left out). */
  readonly commands: number;
  /** The idle rate (same sampling, no messages) × the window. */
  readonly background: number;
  /** (commands − background) ÷ messages. */
  readonly perMessage: number;
  /** EVALSHA + EVAL calls ÷ messages (round trips that run a script). */
  readonly scriptsPerMessage: number;
  /** Per command name: calls ÷ messages (background not subtracted; for the breakdown). */
  readonly byCommand: Record<string, number>;
}

/** The gateway's memory right after a forced full GC. */
export interface LiveReading {
  /** ms since the burst began. */
  readonly t: number;
  readonly heapUsedMB: number;
  readonly rssMB: number;
  /** `wxrelay_gateway_held_requests` at that moment. */
  readonly held: number;
}

export interface MemorySample {
  /** ms since the burst began. */
  readonly t: number;
  readonly rssMB: number;
  /** NaN when the scrape did not answer. */
  readonly held: number;
  readonly heapUsedMB: number;
}

export interface BurstRun {
  readonly mode: 'customer-service' | 'passive';
  readonly llmDelayMs: number;
  readonly users: number;
  readonly outcomes: Partial<Record<Outcome, number>>;
  /** Passive: the user's own answer in the first request. */
  readonly firstAttemptAnswers: number;
  /** Own write → the HTTP answer (passive: the reply; customer-service: `success`), ms. */
  readonly answerFromWrite: LatencySummary;
  /** Burst start (before the first write) → the HTTP answer, ms. */
  readonly answerFromBurst: LatencySummary;
  /** Customer-service sends the fake WeChat API accepted (passive: must be 0). */
  readonly apiSends: number;
  /** Customer-service: burst start → the send accepted, ms. */
  readonly apiFromBurst?: LatencySummary;
  /** RSS just before the burst, after a forced full GC. */
  readonly rssBeforeMB: number;
  /** Largest RSS while the held gauge was at its peak. */
  readonly rssAtPeakMB: number;
  readonly rssMaxMB: number;
  /**
   * The gateway's live heap (heap used right after a forced full GC): before the burst, once the
   * held gauge reached 99 % of the users, about a second later if they were still held (passive),
   * and after every job completed.
   */
  readonly live: { readonly before: LiveReading; readonly fullHold?: LiveReading; readonly later?: LiveReading; readonly after: LiveReading };
  readonly heldPeak: number;
  /** How long the held gauge stayed at ≥ 99 % of the users, s, and the RSS slope meanwhile (MB/s). */
  readonly plateauS: number;
  readonly plateauRssSlopeMBPerS: number;
  readonly samples: MemorySample[];
  readonly redis: RedisCount;
  readonly jobsCompleted: number;
  /** The machine's 1-minute load average as the run began (other work on the 2 cores shows here). */
  readonly load1: number;
  /** CPU used during the run (burst start → every job completed), cores. */
  readonly cpu: CpuShares;
}

/** Cores used over a span: each process of the bench, the whole machine, and what else ran on it. */
export interface CpuShares {
  readonly gateway: number;
  readonly workers: number;
  readonly redis: number;
  readonly fakes: number;
  /** The bench's own process: the load generator and the sampler. */
  readonly generator: number;
  /** Every process on the machine (/proc/stat). */
  readonly machine: number;
  /** machine − the bench's processes: other work sharing the cores. */
  readonly others: number;
}

export interface AutoRun {
  readonly rate: number;
  /** Messages measured (after the warm-up share of the run). */
  readonly sent: number;
  readonly passive: number;
  readonly success: number;
  readonly other: number;
  /** Scheduled send → passive reply received, ms (passive answers only). */
  readonly passiveLatency: LatencySummary;
  /** The same from the request's own write (leaves out the generator's lag and connection waits), ms. */
  readonly passiveFromWrite: LatencySummary;
  /** Scheduled send → any HTTP answer, ms. */
  readonly httpLatency: LatencySummary;
  /** Messages answered `success` whose send the fake API accepted, and scheduled send → that send, ms. */
  readonly apiSends: number;
  readonly apiLatency: LatencySummary;
  /** HTTP answers per second (first send → last answer). */
  readonly achievedRate: number;
  /** Of the messages scheduled in each second of the measured part, the share answered passively. */
  readonly passiveShareBySecond: number[];
  /** The generator's own timer lateness (due − scheduled), ms. */
  readonly generatorLag: LatencySummary;
  readonly cpu: CpuShares;
  /** The machine's 1-minute load average as the run began. */
  readonly load1: number;
}

export interface RepliesResult {
  readonly passive: BurstRun[];
  readonly customerService: BurstRun[];
  readonly auto: AutoRun[];
  /** Median over the passive runs at the first LLM time. */
  readonly firstAttemptAnswers: number;
  /** Median over the auto runs at the first rate (∞ when a run answered nothing passively). */
  readonly autoPassiveP50Ms: number;
  readonly notes: string[];
}

/** The sum of a metric's samples in a Prometheus text exposition (NaN when absent). */
function metric(text: string, name: string): number {
  let total = Number.NaN;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    total = (Number.isNaN(total) ? 0 : total) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

function rssMB(pid: number): number {
  try {
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? Number.NaN : Number(kb) / 1024;
  } catch {
    return Number.NaN;
  }
}

async function scrape(url: string): Promise<{ held: number; heapUsedMB: number }> {
  try {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(2000) })).text();
    return { held: metric(text, 'wxrelay_gateway_held_requests'), heapUsedMB: metric(text, 'wxrelay_gateway_nodejs_heap_size_used_bytes') / MB };
  } catch {
    return { held: Number.NaN, heapUsedMB: Number.NaN };
  }
}

/** Reads the gateway's RSS and scrapes its metrics every `everyMs` until stopped; `samples` fills as it goes. */
function startSampler(gateway: ReplyGateway, everyMs: number, t0: number): { readonly samples: MemorySample[]; stop(): Promise<MemorySample[]> } {
  const samples: MemorySample[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const next = nowMs() + everyMs;
      const rss = rssMB(gateway.server.child.pid);
      const t = nowMs() - t0;
      const m = await scrape(gateway.metricsUrl);
      samples.push({ t, rssMB: rss, ...m });
      await delay(Math.max(0, next - nowMs()));
    }
  })();
  return {
    samples,
    async stop() {
      stopped = true;
      await loop;
      return samples;
    },
  };
}

/** Forces a full GC in the gateway, then reads its heap used, RSS and held requests. */
async function liveReading(gateway: ReplyGateway, t0: number): Promise<LiveReading> {
  await gateway.inspector?.collectGarbage();
  const t = nowMs() - t0;
  const rss = rssMB(gateway.server.child.pid);
  const m = await scrape(gateway.metricsUrl);
  return { t, heapUsedMB: m.heapUsedMB, rssMB: rss, held: m.held };
}

/**
 * Passive: once the sampler sees ≥ 99 % of the users held, a live reading; a second one a second
 * later if they are still held (the heap's growth per held second). Stops early when `over()`.
 */
async function watchHold(gateway: ReplyGateway, samples: readonly MemorySample[], users: number, t0: number, over: () => boolean): Promise<HoldReadings> {
  const full = (held: number): boolean => held >= 0.99 * users;
  while (!over() && !full(samples.at(-1)?.held ?? 0)) await delay(10);
  if (over()) return {};
  const fullHold = await liveReading(gateway, t0);
  if (!full(fullHold.held)) return {};
  await delay(1000);
  if (over() || !full(samples.at(-1)?.held ?? 0)) return { fullHold };
  const later = await liveReading(gateway, t0);
  return full(later.held) ? { fullHold, later } : { fullHold };
}

interface HoldReadings {
  readonly fullHold?: LiveReading;
  readonly later?: LiveReading;
}

/** Starts counting CPU time; the function returns the cores each used since. */
function cpuMeter(pids: { gateway: number; workers: readonly number[]; redis: number; fakes: number }): () => CpuShares {
  const read = () => ({
    at: nowMs(),
    gateway: cpuSeconds(pids.gateway),
    workers: pids.workers.reduce((a, pid) => a + cpuSeconds(pid), 0),
    redis: cpuSeconds(pids.redis),
    fakes: cpuSeconds(pids.fakes),
    generator: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    machine: machineBusySeconds(),
  });
  const a = read();
  return () => {
    const b = read();
    const s = (b.at - a.at) / 1000;
    const c = { gateway: (b.gateway - a.gateway) / s, workers: (b.workers - a.workers) / s, redis: (b.redis - a.redis) / s, fakes: (b.fakes - a.fakes) / s, generator: (b.generator - a.generator) / s, machine: (b.machine - a.machine) / s };
    return { ...c, others: c.machine - c.gateway - c.workers - c.redis - c.fakes - c.generator };
  };
}

/** Calls per command name (INFO commandstats). */
async function commandCalls(redis: BenchRedis): Promise<Map<string, number>> {
  const text = await redis.client.info('commandstats');
  const calls = new Map<string, number>();
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return calls;
}

/** b − a per command, INFO left out, `polls` ZCARDs (the bench's own) taken off. */
function callsBetween(a: Map<string, number>, b: Map<string, number>, polls: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, n] of b) {
    if (name === 'info') continue;
    const d = n - (a.get(name) ?? 0) - (name === 'zcard' ? polls : 0);
    if (d !== 0) out.set(name, d);
  }
  return out;
}

const total = (calls: Map<string, number>): number => [...calls.values()].reduce((x, y) => x + y, 0);

const meterFor = (p: ModeProcesses, redis: BenchRedis, fakes: Fakes): (() => CpuShares) =>
  cpuMeter({ gateway: p.gateway.server.child.pid, workers: p.workers.map((w) => w.pid), redis: redis.pid, fakes: fakes.pid });

interface ReplyGateway {
  readonly server: Server;
  readonly metricsUrl: string;
  /** The gateway's inspector (bursts only), to force a GC before reading its heap. */
  readonly inspector?: Inspector;
}

interface ModeProcesses {
  readonly gateway: ReplyGateway;
  readonly workers: Child[];
}

/** A gateway and its workers in one REPLY_MODE, on a flushed Redis. */
async function startMode(mode: ReplyMode, redis: BenchRedis, fakes: Fakes, workers: number, concurrency: number, workerEnv: Record<string, string> = {}): Promise<ModeProcesses> {
  await redis.reset();
  await fakes.reset();
  const metricsPort = await freePort();
  // The bursts read the gateway's live heap (a GC forced over the inspector); auto runs do not.
  const inspectPort = mode === 'auto' ? undefined : await freePort();
  const server = await startGateway(redis.url, inspectPort === undefined ? [] : [`--inspect=127.0.0.1:${inspectPort}`], {
    REPLY_MODE: mode,
    METRICS_PORT: String(metricsPort),
    ...(mode === 'auto' ? { AUTO_HOLD_MS: String(AUTO_HOLD_MS) } : {}),
  });
  try {
    const inspector = inspectPort === undefined ? undefined : await connectInspector(inspectPort);
    const children = await startWorkers(workers, redis.url, fakes.apiUrl, concurrency, mode === 'auto' ? undefined : fakes.llmUrl, [], () => ({ REPLY_MODE: mode, ...workerEnv }));
    return { gateway: { server, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, ...(inspector === undefined ? {} : { inspector }) }, workers: children };
  } catch (err) {
    await server.child.stop();
    throw err;
  }
}

async function stopMode(p: ModeProcesses): Promise<void> {
  p.gateway.inspector?.close();
  await stopAll([p.gateway.server.child, ...p.workers]);
}

const COMPLETED_KEY = `${DEFAULT_QUEUE_PREFIX}:${INBOUND_QUEUE}:completed`;

/** Waits until `target` jobs are completed; how many ZCARD polls that took (to be taken off the count). */
async function waitCompleted(redis: BenchRedis, target: number, timeoutMs: number): Promise<{ polls: number; completed: number }> {
  const deadline = Date.now() + timeoutMs;
  let polls = 0;
  let completed = 0;
  while (Date.now() < deadline) {
    polls += 1;
    completed = await redis.client.zcard(COMPLETED_KEY);
    if (completed >= target) break;
    await delay(20);
  }
  return { polls, completed };
}

/** Redis commands per second with nothing sent (the workers' idle loop, the sampler's scrapes). */
async function backgroundRate(redis: BenchRedis, gateway: ReplyGateway, s: RepliesSettings): Promise<number> {
  const sampler = startSampler(gateway, s.sampleMs, nowMs());
  const a = await commandCalls(redis);
  const t0 = nowMs();
  await delay(s.idleS * 1000);
  const b = await commandCalls(redis);
  const seconds = (nowMs() - t0) / 1000;
  await sampler.stop();
  return total(callsBetween(a, b, 0)) / seconds;
}

const HEADER = (name: string): RegExp => new RegExp(`\\r\\n${name}:\\s*([^\\r]*)`, 'i');
const REPLY_KIND = HEADER('x-wxrelay-reply');
const REPLY_ATTEMPT = HEADER('x-wxrelay-attempt');

/** A passive reply's XML carries the user as ToUserName and, for the echo LLM, the message's token. */
function classify(response: RawResponse | undefined, openid: string, mustContain: string): Outcome {
  if (response === undefined) return 'no-answer';
  if (!response.head.startsWith('HTTP/1.1 200')) return 'other';
  if (response.body === 'success') return 'success';
  const kind = REPLY_KIND.exec(response.head)?.[1];
  if (kind === 'placeholder') return 'placeholder';
  if (kind !== 'answer') return 'other';
  if (!response.body.includes(`<ToUserName><![CDATA[${openid}]]></ToUserName>`) || !response.body.includes(mustContain)) return 'wrong-answer';
  return REPLY_ATTEMPT.exec(response.head)?.[1] === '1' ? 'answer-1' : 'answer-later';
}

function count<T extends string>(values: readonly T[]): Partial<Record<T, number>> {
  const out: Partial<Record<T, number>> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

/** The largest finite value (NaN when none). */
function largest(values: readonly number[]): number {
  const xs = values.filter((v) => Number.isFinite(v));
  return xs.length === 0 ? Number.NaN : Math.max(...xs);
}

/** The RSS slope (least squares, MB/s) over samples. */
function slope(samples: readonly MemorySample[]): number {
  if (samples.length < 2) return Number.NaN;
  const xs = samples.map((x) => x.t / 1000);
  const ys = samples.map((x) => x.rssMB);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

/** One burst of `users` at once against a gateway in passive or customer-service mode. */
async function burstRun(
  mode: 'customer-service' | 'passive',
  procs: ModeProcesses,
  redis: BenchRedis,
  fakes: Fakes,
  s: RepliesSettings,
  llmDelayMs: number,
  bgRate: number,
  tag: number,
): Promise<BurstRun> {
  const users = s.users;
  const { gateway } = procs;
  const load1 = loadavg()[0]!;
  await fakes.reset();
  const completedBefore = await redis.client.zcard(COMPLETED_KEY);
  const t0 = nowMs();
  const liveBefore = await liveReading(gateway, t0);
  const outcomes: Outcome[] = new Array<Outcome>(users).fill('no-answer');
  const userPrefix = mode === 'passive' ? 'oPas' : 'oCs';
  const calls0 = await commandCalls(redis);
  const cpu = meterFor(procs, redis, fakes);
  const burstAt = nowMs();
  const sampler = startSampler(gateway, s.sampleMs, t0);
  let burstOver = false;
  const hold: Promise<HoldReadings> = mode === 'passive' ? watchHold(gateway, sampler.samples, users, t0, () => burstOver) : Promise.resolve({});
  const r = await runClosedLoop({
    port: gateway.server.port,
    connections: users,
    count: users,
    makeRequest: perUserRequests(gateway.server.port, tag, userPrefix, '你好'),
    timeoutMs: 15_000,
    onResponse: (i, response) => {
      outcomes[i] = classify(response, perUserOpenid(tag, userPrefix, i), `tok${i}x`);
    },
  });
  burstOver = true;
  const { fullHold, later } = await hold;
  const got = mode === 'customer-service' ? await fakes.collect(users, 60_000) : undefined;
  const done = await waitCompleted(redis, completedBefore + users, 30_000);
  const calls1 = await commandCalls(redis);
  const cpuShares = cpu();
  const windowS = (nowMs() - burstAt) / 1000;
  const samples = await sampler.stop();
  const liveAfter = await liveReading(gateway, t0);
  if (got === undefined) {
    // Passive mode must not have used the customer-service API at all.
    const stray = await fakes.collect(0, 0);
    if (stray.total > 0) log(`  passive burst: ${stray.total} customer-service sends (expected none)`);
  }

  const calls = callsBetween(calls0, calls1, done.polls);
  const commands = total(calls);
  const background = bgRate * windowS;
  const byCommand: Record<string, number> = {};
  for (const [name, n] of [...calls].sort((a, b) => b[1] - a[1])) byCommand[name] = n / users;
  const heldPeak = samples.reduce((m, x) => (Number.isNaN(x.held) ? m : Math.max(m, x.held)), 0);
  const atPeak = samples.filter((x) => x.held === heldPeak);
  const plateau = samples.filter((x) => x.held >= 0.99 * users);
  const fromWrite: number[] = [];
  const fromBurst: number[] = [];
  for (let i = 0; i < users; i++) {
    const answered = outcomes[i] !== 'no-answer';
    fromWrite.push(answered ? r.ackAt[i]! - r.sentAt[i]! : Number.POSITIVE_INFINITY);
    fromBurst.push(answered ? r.ackAt[i]! - r.startedAt : Number.POSITIVE_INFINITY);
  }
  const apiFromBurst = got?.at.map((at) => at - r.startedAt);
  const tally = count(outcomes);
  return {
    mode,
    llmDelayMs,
    users,
    outcomes: tally,
    firstAttemptAnswers: tally['answer-1'] ?? 0,
    answerFromWrite: summarize(fromWrite),
    answerFromBurst: summarize(fromBurst),
    apiSends: got?.total ?? 0,
    ...(apiFromBurst === undefined ? {} : { apiFromBurst: summarize(apiFromBurst) }),
    rssBeforeMB: liveBefore.rssMB,
    rssAtPeakMB: largest(atPeak.map((x) => x.rssMB)),
    rssMaxMB: largest([liveBefore.rssMB, ...samples.map((x) => x.rssMB)]),
    live: { before: liveBefore, ...(fullHold === undefined ? {} : { fullHold }), ...(later === undefined ? {} : { later }), after: liveAfter },
    heldPeak,
    plateauS: plateau.length < 2 ? 0 : (plateau.at(-1)!.t - plateau[0]!.t) / 1000,
    plateauRssSlopeMBPerS: slope(plateau),
    samples,
    redis: {
      windowS,
      commands,
      background,
      perMessage: (commands - background) / users,
      scriptsPerMessage: ((calls.get('evalsha') ?? 0) + (calls.get('eval') ?? 0)) / users,
      byCommand,
    },
    jobsCompleted: done.completed - completedBefore,
    load1,
    cpu: cpuShares,
  };
}

function logBurst(b: BurstRun, run: number): void {
  const o = Object.entries(b.outcomes).map(([k, v]) => `${k} ${v}`).join(', ');
  log(
    `  ${b.mode} LLM ${b.llmDelayMs} ms run ${run}: ${o}; answer p50 ${b.answerFromWrite.p50.toFixed(1)} ms p99 ${b.answerFromWrite.p99.toFixed(1)} ms (from own write)` +
      `${b.apiSends > 0 ? `, API sends ${b.apiSends}` : ''}; RSS ${b.rssBeforeMB.toFixed(1)} → ${b.rssAtPeakMB.toFixed(1)} MB at ${b.heldPeak} held; ` +
      `live heap ${[b.live.before, b.live.fullHold, b.live.later, b.live.after].map((l) => (l === undefined ? '—' : `${l.heapUsedMB.toFixed(1)}${l === b.live.before || l === b.live.after ? '' : ` (${l.held} held, t ${(l.t / 1000).toFixed(1)} s)`}`)).join(' → ')} MB; ` +
      `Redis ${b.redis.perMessage.toFixed(1)} commands/msg (${b.redis.scriptsPerMessage.toFixed(2)} scripts/msg, ${b.redis.commands} in ${b.redis.windowS.toFixed(1)} s, background ${b.redis.background.toFixed(0)}); jobs completed ${b.jobsCompleted}; ` +
      `cores: machine ${b.cpu.machine.toFixed(2)} (others ${b.cpu.others.toFixed(2)}); load ${b.load1.toFixed(2)}`,
  );
}

/** The burst mode's warm-up, background and measured runs. */
async function burstMode(
  mode: 'customer-service' | 'passive',
  delays: readonly number[],
  redis: BenchRedis,
  fakes: Fakes,
  s: RepliesSettings,
  nextTag: () => number,
): Promise<BurstRun[]> {
  await fakes.setLlmDelay(delays[0]!);
  const procs = await startMode(mode, redis, fakes, s.workers, s.concurrency);
  const { gateway } = procs;
  try {
    // One unmeasured burst: the code of every process compiled, the worker's access token fetched.
    const warm = await burstRun(mode, procs, redis, fakes, s, delays[0]!, 0, nextTag());
    log(`  ${mode}: warm-up burst: ${mode === 'passive' ? `${warm.firstAttemptAnswers} answered passively` : `${warm.apiSends} API sends`}, ${warm.jobsCompleted} jobs completed`);
    const bgRate = await backgroundRate(redis, gateway, s);
    log(`  ${mode}: background ${bgRate.toFixed(1)} Redis commands/s (idle, sampling on)`);
    const runs: BurstRun[] = [];
    for (const llmDelayMs of delays) {
      await fakes.setLlmDelay(llmDelayMs);
      for (let run = 0; run < s.runs; run++) {
        const b = await burstRun(mode, procs, redis, fakes, s, llmDelayMs, bgRate, nextTag());
        runs.push(b);
        logBurst(b, run + 1);
      }
    }
    return runs;
  } finally {
    await stopMode(procs);
  }
}

/** One open-loop auto run: `warm` + `measured` messages at `rate`. */
async function autoRun(procs: ModeProcesses, redis: BenchRedis, fakes: Fakes, s: RepliesSettings['auto'], rate: number, warm: number, measured: number, tag: number): Promise<AutoRun> {
  const { gateway } = procs;
  const load1 = loadavg()[0]!;
  await fakes.reset();
  const count = warm + measured;
  const userPrefix = 'oAuto';
  const outcomes: Outcome[] = new Array<Outcome>(count).fill('no-answer');
  const cpu = meterFor(procs, redis, fakes);
  const r = await runOpenLoop({
    port: gateway.server.port,
    connections: s.connections,
    rate,
    count,
    makeRequest: perUserTexts(gateway.server.port, tag, userPrefix, () => AUTO_KEYWORD),
    onResponse: (i, response) => {
      outcomes[i] = classify(response, perUserOpenid(tag, userPrefix, i), AUTO_ANSWER);
    },
  });
  const cpuShares = cpu();
  const successes = outcomes.filter((o) => o === 'success').length;
  const got = await fakes.collect(successes, 30_000);
  const sentBy = new Map<string, number>();
  got.to.forEach((openid, k) => sentBy.set(openid, got.at[k]!));

  const passive: number[] = [];
  const passiveFromWrite: number[] = [];
  const http: number[] = [];
  const api: number[] = [];
  const lag: number[] = [];
  const bySecond: { passive: number; all: number }[] = [];
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  for (let i = warm; i < count; i++) {
    const o = outcomes[i]!;
    const answered = o !== 'no-answer';
    const second = Math.floor((i - warm) / rate);
    const bucket = (bySecond[second] ??= { passive: 0, all: 0 });
    bucket.all += 1;
    http.push(answered ? r.ackAt[i]! - r.scheduledAt[i]! : Number.POSITIVE_INFINITY);
    lag.push(r.dueAt[i]! - r.scheduledAt[i]!);
    if (o === 'answer-1') {
      bucket.passive += 1;
      passive.push(r.ackAt[i]! - r.scheduledAt[i]!);
      passiveFromWrite.push(r.ackAt[i]! - r.sentAt[i]!);
    }
    if (o === 'success') {
      const at = sentBy.get(perUserOpenid(tag, userPrefix, i));
      api.push(at === undefined ? Number.POSITIVE_INFINITY : at - r.scheduledAt[i]!);
    }
    if (answered) {
      first = Math.min(first, r.sentAt[i]!);
      last = Math.max(last, r.ackAt[i]!);
    }
  }
  const measuredOutcomes = outcomes.slice(warm);
  const nPassive = measuredOutcomes.filter((o) => o === 'answer-1').length;
  const nSuccess = measuredOutcomes.filter((o) => o === 'success').length;
  return {
    rate,
    sent: measured,
    passive: nPassive,
    success: nSuccess,
    other: measured - nPassive - nSuccess,
    passiveLatency: summarize(passive),
    passiveFromWrite: summarize(passiveFromWrite),
    httpLatency: summarize(http),
    apiSends: api.filter((x) => Number.isFinite(x)).length,
    apiLatency: summarize(api),
    achievedRate: http.filter((x) => Number.isFinite(x)).length / ((last - first) / 1000),
    passiveShareBySecond: bySecond.map((b) => b.passive / b.all),
    generatorLag: summarize(lag),
    cpu: cpuShares,
    load1,
  };
}

async function autoMode(redis: BenchRedis, fakes: Fakes, s: RepliesSettings['auto'], nextTag: () => number): Promise<AutoRun[]> {
  mkdirSync(RUNS_DIR, { recursive: true });
  const rules = resolve(RUNS_DIR, 'replies-rules.yaml');
  writeFileSync(rules, `rules:\n  - name: bench keyword\n    match: { msgType: text, content: ${AUTO_KEYWORD} }\n    reply: ${JSON.stringify(AUTO_ANSWER)}\n`);
  const procs = await startMode('auto', redis, fakes, 1, s.concurrency, { REPLY_RULES_FILE: rules });
  try {
    const runs: AutoRun[] = [];
    for (const rate of s.rates) {
      // Warm-up at this rate (2 s), unmeasured.
      await autoRun(procs, redis, fakes, s, rate, 0, Math.round(rate * 2), nextTag());
      for (let run = 0; run < s.runs; run++) {
        const a = await autoRun(procs, redis, fakes, s, rate, Math.round(rate * s.warmupS), Math.round(rate * s.durationS), nextTag());
        runs.push(a);
        log(
          `  auto ${a.rate} msg/s run ${run + 1}: passive ${a.passive}/${a.sent} (p50 ${a.passiveLatency.p50.toFixed(2)} ms, p99 ${a.passiveLatency.p99.toFixed(2)} ms from the schedule; ` +
            `p50 ${a.passiveFromWrite.p50.toFixed(2)} ms from the write), success ${a.success} (API sends ${a.apiSends}, p50 ${a.apiLatency.p50.toFixed(0)} ms), other ${a.other}; ${a.achievedRate.toFixed(0)} req/s; ` +
            `passive share by second ${a.passiveShareBySecond.map((x) => `${Math.round(x * 100)}%`).join(' ')}; generator lag p99 ${a.generatorLag.p99.toFixed(2)} ms; ` +
            `cores: gateway ${a.cpu.gateway.toFixed(2)} worker ${a.cpu.workers.toFixed(2)} redis ${a.cpu.redis.toFixed(2)} fakes ${a.cpu.fakes.toFixed(2)} generator ${a.cpu.generator.toFixed(2)}, machine ${a.cpu.machine.toFixed(2)} (others ${a.cpu.others.toFixed(2)}); load ${a.load1.toFixed(2)}`,
        );
      }
    }
    return runs;
  } finally {
    await stopMode(procs);
  }
}

export async function runRepliesScenario(redis: BenchRedis, fakes: Fakes, settings: Settings, runTagBase: number): Promise<RepliesResult> {
  const s = settings.replies;
  let tag = runTagBase;
  const nextTag = (): number => tag++;
  const passive = await burstMode('passive', s.llmDelaysMs, redis, fakes, s, nextTag);
  const customerService = await burstMode('customer-service', s.llmDelaysMs.slice(0, 1), redis, fakes, s, nextTag);
  const auto = await autoMode(redis, fakes, s.auto, nextTag);
  await redis.reset();
  await fakes.setLlmDelay(settings.slow.llmDelayMs);

  const notes: string[] = [];
  const headline = passive.filter((b) => b.llmDelayMs === s.llmDelaysMs[0]);
  for (const b of passive) {
    if (b.firstAttemptAnswers < b.users) notes.push(`Passive, LLM ${b.llmDelayMs} ms: ${b.users - b.firstAttemptAnswers} of ${b.users} users were not answered on the first request (${JSON.stringify(b.outcomes)}).`);
    if (b.apiSends > 0) notes.push(`Passive, LLM ${b.llmDelayMs} ms: ${b.apiSends} customer-service sends (expected none).`);
  }
  for (const b of [...passive, ...customerService]) {
    if (b.jobsCompleted < b.users) notes.push(`${b.mode}, LLM ${b.llmDelayMs} ms: only ${b.jobsCompleted} of ${b.users} jobs completed before the Redis count was taken.`);
  }
  return {
    passive,
    customerService,
    auto,
    firstAttemptAnswers: median(headline.map((b) => b.firstAttemptAnswers)),
    autoPassiveP50Ms: medianKeepingInfinity(auto.filter((a) => a.rate === s.auto.rates[0]).map((a) => (a.passive === 0 ? Number.POSITIVE_INFINITY : a.passiveLatency.p50))),
    notes,
  };
}

/** The median, where ∞ (a run with no passive answer at all) counts as a value ({@link median} drops it). */
function medianKeepingInfinity(values: readonly number[]): number {
  const xs = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (xs.length === 0) return Number.NaN;
  const mid = xs.length >> 1;
  return xs.length % 2 === 1 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
}

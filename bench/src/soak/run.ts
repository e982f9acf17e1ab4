/**
 * `pnpm soak`: the real gateway, several real workers and a private Redis (AOF) under an open-loop
 * WeChat-like load, with faults injected at the fake WeChat API and the fake LLM, and processes
 * killed on a schedule. At the end it stops sending, waits (bounded) for the backlog to drain and
 * reports sent / acked / given up / lost / duplicates / order / latencies. Exit 1 on any loss or
 * any duplicate that was not in doubt.
 */
import { createWriteStream, mkdtempSync, rmSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { DEFAULT_QUEUE_PREFIX, INBOUND_QUEUE } from '@wxrelay/shared';
import { freePort, REPO_ROOT, startRedis, type TestRedis } from '@wxrelay/testkit';
import { GATEWAY_ENTRY, REDIS_ARGS, WORKER_ENTRY } from '../infra.ts';
import { spawnNode, waitForPort, type Child } from '../procs.ts';
import { gatewayEnv, IDENTITY, workerEnv } from '../settings.ts';
import { analyze, formatReport, inDoubtJobIds, tokensIn, type DeliveryRecord, type SoakReport } from './analyze.ts';
import type { SoakFakesEnv, SoakFakesMessage, SoakFakesReady } from './fakes.ts';
import { faultSchedule, parseArgs, type FaultKind, type SoakOptions } from './options.ts';
import { startSender } from './sender.ts';

const started = Date.now();
function log(message: string): void {
  process.stderr.write(`[soak ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
}

/** Appends a child's stdout and stderr to `file`, line by line, and hands each stdout line to `onLine`. */
function capture(child: Child, file: WriteStream, onLine: (line: string) => void): void {
  let partial = '';
  child.proc.stdout?.on('data', (chunk: Buffer) => {
    file.write(chunk);
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) onLine(line);
  });
  child.proc.stderr?.on('data', (chunk: Buffer) => file.write(chunk));
}

interface TimelineEntry {
  readonly atS: number;
  readonly kind: FaultKind;
  readonly detail: string;
  readonly tookMs: number;
}

export interface SoakResult {
  readonly settings: SoakOptions;
  readonly report: SoakReport;
  readonly timeline: readonly TimelineEntry[];
  /** Queue counts when the drain ended. */
  readonly queue: Record<string, number>;
  readonly drained: boolean;
  readonly drainMs: number;
  readonly workerGenerations: number;
  /** Worker log lines at level error or above (all generations). */
  readonly workerErrorLines: number;
  readonly faultsInjected: { readonly api: number; readonly llm: number; readonly llmSlow: number };
  readonly logDir?: string;
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const logDir = mkdtempSync(join(tmpdir(), 'wxrelay-soak-'));
  const cleanup: (() => Promise<void>)[] = [];
  const doubtLines: string[] = [];
  let workerErrorLines = 0;
  const deliveries: DeliveryRecord[] = [];
  const answeredSeqs = new Set<number>();
  let faultsInjected = { api: 0, llm: 0, llmSlow: 0 };
  const timeline: TimelineEntry[] = [];
  let keepLogs = opts.keepLogs;

  try {
    log(`settings: ${JSON.stringify(opts)}; logs in ${logDir}`);
    const redis: TestRedis = await startRedis({ private: true, env: { WXRELAY_TEST_NO_DOCKER: '1' }, args: REDIS_ARGS });
    cleanup.push(() => redis.close());

    // The fakes child: WeChat API + LLM with faults.
    const fakesEnv: SoakFakesEnv = { appId: IDENTITY.appId, appSecret: IDENTITY.appSecret, faultEveryMs: opts.faultEveryMs, slowSendMs: 2000, llmSlowEvery: 50, llmSlowMs: 3000 };
    const fakes = spawnNode({ name: 'fakes', entry: resolve(import.meta.dirname, 'fakes.ts'), env: { SOAK_FAKES: JSON.stringify(fakesEnv) }, ipc: true, cwd: REPO_ROOT });
    cleanup.push(() => fakes.stop());
    let onInjected: (() => void) | undefined;
    const ready = await new Promise<SoakFakesReady>((resolveReady, reject) => {
      void fakes.exited.then(() => reject(new Error(`fakes exited:\n${fakes.output()}`)));
      fakes.proc.on('message', (m: SoakFakesMessage) => {
        if ('ready' in m) return resolveReady(m.ready);
        if ('injected' in m) {
          faultsInjected = m.injected;
          onInjected?.();
          return;
        }
        for (const d of m.deliveries) {
          deliveries.push(d);
          for (const t of tokensIn(d.text)) answeredSeqs.add(t.seq);
        }
      });
    });

    // Gateway on a fixed port (WeChat calls one URL), restarted in place.
    const gatewayPort = await freePort();
    const gatewayLog = createWriteStream(join(logDir, 'gateway.log'));
    let gateway: Child | undefined;
    const startGateway = async (): Promise<void> => {
      const child = spawnNode({ name: 'gateway', entry: GATEWAY_ENTRY, env: gatewayEnv(redis.url, gatewayPort), cwd: REPO_ROOT });
      capture(child, gatewayLog, () => undefined);
      gateway = child;
      await waitForPort(gatewayPort, child, 30_000);
    };
    await startGateway();
    cleanup.push(async () => {
      await gateway?.stop(10_000);
      gatewayLog.end();
    });

    // Workers: slot 0 answers through the LLM (its faults matter), the others echo.
    const workerLog = createWriteStream(join(logDir, 'workers.log'));
    const workers: (Child | undefined)[] = Array.from({ length: opts.workers }, () => undefined);
    let generations = 0;
    const startWorker = (slot: number): void => {
      generations += 1;
      const env = {
        ...workerEnv(redis.url, ready.apiUrl, opts.concurrency, slot === 0 ? ready.llmUrl : undefined),
        WORKER_LOCK_DURATION_MS: '10000',
        WORKER_STALLED_INTERVAL_MS: '5000',
      };
      const child = spawnNode({ name: `worker ${slot + 1} (gen ${generations})`, entry: WORKER_ENTRY, env, cwd: REPO_ROOT });
      capture(child, workerLog, (line) => {
        if (line.includes('send in doubt')) doubtLines.push(line);
        if (/"level":(5|6)\d/.test(line)) workerErrorLines += 1;
      });
      workers[slot] = child;
    };
    for (let i = 0; i < opts.workers; i++) startWorker(i);
    cleanup.push(async () => {
      await Promise.all(workers.map((w) => (w === undefined ? Promise.resolve() : w.stop(30_000))));
      workerLog.end();
    });

    const queueConnection = new Redis(redis.url, { maxRetriesPerRequest: null });
    queueConnection.on('error', () => undefined);
    const queue = new Queue(INBOUND_QUEUE, { connection: queueConnection, prefix: DEFAULT_QUEUE_PREFIX, skipMetasUpdate: true });
    queue.on('error', () => undefined); // Redis is killed on purpose
    cleanup.push(async () => {
      await queue.close().catch(() => undefined);
      queueConnection.disconnect();
    });
    const registerBy = Date.now() + 30_000;
    while ((await queue.getWorkersCount()) < opts.workers) {
      const dead = workers.find((w) => w?.proc.exitCode !== null);
      if (dead !== undefined) throw new Error(`${dead.name} exited:\n${dead.output()}`);
      if (Date.now() > registerBy) throw new Error('workers did not register within 30 s');
      await delay(100);
    }
    log(`stack up: gateway :${gatewayPort}, ${opts.workers} workers (worker 1 via the LLM), redis ${redis.url}, fakes ${ready.apiUrl}`);

    // Send.
    const sender = startSender({ gatewayUrl: `http://127.0.0.1:${gatewayPort}/wx`, rate: opts.rate, users: opts.users, durationS: opts.durationS, arrivals: opts.arrivals });
    const t0 = Date.now();
    const progress = setInterval(() => {
      const m = sender.messages;
      log(`sent ${m.length}, acked ${m.filter((x) => x.outcome === 'acked').length}, given up ${m.filter((x) => x.outcome === 'gave-up').length}, in flight ${sender.inFlight()}, sends accepted ${deliveries.length}`);
    }, 10_000);
    cleanup.push(() => Promise.resolve(clearInterval(progress)));

    // Process faults, one after the other, on schedule.
    let nextWorker = 0;
    const faults = (async () => {
      for (const { atS, kind } of faultSchedule(opts.durationS, opts.processFaults)) {
        const wait = t0 + atS * 1000 - Date.now();
        if (wait > 0) await delay(wait);
        const begin = Date.now();
        let detail = '';
        switch (kind) {
          case 'worker-kill':
          case 'worker-term': {
            const slot = nextWorker++ % opts.workers;
            const w = workers[slot];
            if (kind === 'worker-kill') {
              w?.proc.kill('SIGKILL');
              await w?.exited;
            } else await w?.stop(30_000);
            detail = `${w?.name ?? 'worker'} ${kind === 'worker-kill' ? 'SIGKILL' : 'SIGTERM'}, exit ${w?.proc.exitCode ?? w?.proc.signalCode}; restarted`;
            startWorker(slot);
            break;
          }
          case 'redis-kill':
            await redis.stop();
            await delay(2000);
            await redis.start();
            detail = 'redis-server SIGKILL, down 2 s, restarted on the same port (AOF)';
            break;
          case 'gateway-term':
          case 'gateway-kill': {
            const g = gateway;
            if (kind === 'gateway-term') await g?.stop(10_000);
            else {
              g?.proc.kill('SIGKILL');
              await g?.exited;
            }
            detail = `gateway ${kind === 'gateway-term' ? 'SIGTERM' : 'SIGKILL'}, exit ${g?.proc.exitCode ?? g?.proc.signalCode}; restarted on the same port`;
            await startGateway();
            break;
          }
        }
        const entry = { atS: Math.round((begin - t0) / 100) / 10, kind, detail, tookMs: Date.now() - begin };
        timeline.push(entry);
        log(`fault at ${entry.atS} s: ${detail} (${entry.tookMs} ms)`);
      }
    })();

    await sender.sending;
    log(`sending stopped after ${((Date.now() - t0) / 1000).toFixed(1)} s; waiting for callbacks in flight`);
    await faults;
    await sender.settled();
    await new Promise<void>((resolveInjected) => {
      onInjected = resolveInjected;
      fakes.proc.send({ cmd: 'faults', on: false });
    });

    // Drain: every acked message answered and nothing left in the queue, or the bound.
    const drainStart = Date.now();
    let drained = false;
    let counts: Record<string, number> = {};
    while (Date.now() - drainStart < opts.drainS * 1000) {
      counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed');
      const left = (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0) + (counts['waiting-children'] ?? 0);
      const unanswered = sender.messages.filter((m) => m.outcome === 'acked' && !answeredSeqs.has(m.seq)).length;
      if (left === 0 && unanswered === 0) {
        drained = true;
        break;
      }
      await delay(500);
    }
    const drainMs = Date.now() - drainStart;
    // Late duplicates and the fakes' last batch.
    await delay(3000);
    counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed');
    log(`drain ${drained ? 'done' : 'NOT done'} after ${(drainMs / 1000).toFixed(1)} s; queue ${JSON.stringify(counts)}`);

    const report = analyze(sender.messages, deliveries, inDoubtJobIds(doubtLines));
    keepLogs ||= report.failures.length > 0 || !drained;
    return {
      settings: opts,
      report,
      timeline,
      queue: counts,
      drained,
      drainMs,
      workerGenerations: generations,
      workerErrorLines,
      faultsInjected,
      ...(keepLogs ? { logDir } : {}),
    };
  } catch (err) {
    keepLogs = true;
    log(`failed; logs kept in ${logDir}`);
    throw err;
  } finally {
    for (const step of cleanup.reverse()) await step().catch((err: unknown) => log(`cleanup: ${String(err)}`));
    if (!keepLogs) rmSync(logDir, { recursive: true, force: true });
  }
}

export function formatResult(r: SoakResult): string {
  const s = r.settings;
  const lines = [
    `wxrelay soak (${s.profile}): ${s.durationS} s at ${s.rate} msg/s (${s.arrivals}), ${s.users} users, ${s.workers} workers × concurrency ${s.concurrency}`,
    `faults injected: ${r.faultsInjected.api} WeChat API (-1, 502, 500, slow 2 s), ${r.faultsInjected.llm} LLM (500, 503, 429), ${r.faultsInjected.llmSlow} slow LLM answers (3 s)`,
    'process faults:',
    ...r.timeline.map((t) => `  ${String(t.atS).padStart(6)} s  ${t.detail} (${t.tookMs} ms)`),
    `drain: ${r.drained ? 'done' : 'NOT DONE'} in ${(r.drainMs / 1000).toFixed(1)} s; queue at the end: ${JSON.stringify(r.queue)}`,
    `worker generations: ${r.workerGenerations}; worker log lines at error level: ${r.workerErrorLines}`,
    '',
    formatReport(r.report),
  ];
  if (r.logDir !== undefined) lines.push(`  logs: ${r.logDir}`);
  return lines.join('\n');
}

export async function main(argv: readonly string[]): Promise<number> {
  const opts = parseArgs(argv);
  const result = await runSoak(opts);
  const table = formatResult(result);
  if (opts.json) {
    process.stderr.write(`${table}\n`);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else process.stdout.write(`${table}\n`);
  return result.report.failures.length > 0 ? 1 : 0;
}

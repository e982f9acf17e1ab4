/**
 * Scenario 7: what a durable ack costs. The gateway answers `success` once Redis holds the message;
 * with `appendfsync always` Redis also fsyncs its AOF before it replies (one fsync per event-loop
 * turn, shared by every write of that turn), with `everysec` a background thread fsyncs once a
 * second and a crash of the machine can lose up to a second of acked messages.
 *
 * Same Redis, same gateway, same closed loop as scenario 1 (wrk, plain mode); only `appendfsync`
 * changes between runs (CONFIG SET), and rounds interleave the two settings so that drift in the
 * machine's load hits both alike. The ratio is taken run by run.
 */
import { execFileSync } from 'node:child_process';
import type { BenchRedis, Server } from '../infra.ts';
import { log } from '../log.ts';
import { plainQuery, textTemplate } from '../payloads.ts';
import { cpuSeconds } from '../procs.ts';
import type { Settings } from '../settings.ts';
import { median, pairedRatio } from '../stats.ts';
import { runWrk, type WrkResult } from '../wrk.ts';

export const FSYNC_MODES = ['everysec', 'always'] as const;
export type FsyncMode = (typeof FSYNC_MODES)[number];

export interface DurabilityRun extends WrkResult {
  readonly redisCores: number;
  readonly gatewayCores: number;
  /** Redis's `aof_delayed_fsync` grew by this much during the run (everysec: fsyncs that had to wait). */
  readonly delayedFsyncs: number;
}

export interface DurabilityModeResult {
  readonly appendfsync: FsyncMode;
  readonly runs: DurabilityRun[];
  readonly reqPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly redisCores: number;
}

export interface DurabilityResult {
  readonly modes: DurabilityModeResult[];
  /** `always` req/s over `everysec` req/s, pair by pair, median. */
  readonly alwaysOverEverysec: number;
  /** Where the AOF lives, and on what: fsync's cost is the disk's. */
  readonly aofDir: string;
  readonly aofFilesystem: string;
  readonly notes: string[];
}

function filesystemOf(dir: string): string {
  try {
    const type = execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim();
    const source = execFileSync('df', ['--output=source', dir], { encoding: 'utf8' }).trim().split('\n')[1]?.trim();
    return source === undefined ? type : `${type} on ${source}`;
  } catch {
    return 'unknown';
  }
}

async function infoField(redis: BenchRedis, section: string, field: string): Promise<number> {
  const text = await redis.client.info(section);
  return Number(new RegExp(`^${field}:(.*)$`, 'm').exec(text)?.[1]?.trim() ?? Number.NaN);
}

export async function runDurabilityScenario(gateway: Server, redis: BenchRedis, settings: Settings, runTagBase: number): Promise<DurabilityResult> {
  const s = settings.closed;
  const notes: string[] = [];
  const [, aofDir = ''] = await redis.client.config('GET', 'dir');
  const aofFilesystem = filesystemOf(aofDir);
  log(`  AOF in ${aofDir} (${aofFilesystem})`);
  const { head, tail } = textTemplate();
  const args = (tag: number): string[] => [plainQuery().path, head, tail, String(tag)];
  const runs = new Map<FsyncMode, DurabilityRun[]>(FSYNC_MODES.map((m) => [m, []]));
  let tag = runTagBase;
  try {
    for (let round = 0; round < settings.durability.runs; round++) {
      // Alternate which setting goes first, so neither always runs on a fresher machine.
      const order = round % 2 === 0 ? FSYNC_MODES : [...FSYNC_MODES].reverse();
      for (const mode of order) {
        await redis.client.config('SET', 'appendfsync', mode);
        await redis.reset();
        await runWrk({ port: gateway.port, script: 'plain.lua', args: args(tag++), connections: s.connections, threads: s.threads, durationS: s.warmupS });
        await redis.reset();
        const cpu0 = cpuSeconds(gateway.child.pid);
        const rcpu0 = cpuSeconds(redis.pid);
        const delayed0 = await infoField(redis, 'persistence', 'aof_delayed_fsync');
        const r = await runWrk({ port: gateway.port, script: 'plain.lua', args: args(tag++), connections: s.connections, threads: s.threads, durationS: s.durationS });
        const run: DurabilityRun = {
          ...r,
          gatewayCores: (cpuSeconds(gateway.child.pid) - cpu0) / r.durationS,
          redisCores: (cpuSeconds(redis.pid) - rcpu0) / r.durationS,
          delayedFsyncs: (await infoField(redis, 'persistence', 'aof_delayed_fsync')) - delayed0,
        };
        runs.get(mode)!.push(run);
        if (r.errors > 0) notes.push(`durability, appendfsync ${mode}, round ${round + 1}: ${r.errorDetail}`);
        log(`  round ${round + 1} appendfsync ${mode}: ${r.reqPerSec.toFixed(0)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, redis cpu ${run.redisCores.toFixed(2)}${r.errors > 0 ? `, ERRORS ${r.errorDetail}` : ''}`);
      }
    }
  } finally {
    // The bench's Redis runs with everysec for every other scenario.
    await redis.client.config('SET', 'appendfsync', 'everysec');
    await redis.reset();
  }
  const modes = FSYNC_MODES.map((appendfsync): DurabilityModeResult => {
    const rs = runs.get(appendfsync)!;
    return {
      appendfsync,
      runs: rs,
      reqPerSec: median(rs.map((r) => r.reqPerSec)),
      p50Ms: median(rs.map((r) => r.p50Ms)),
      p99Ms: median(rs.map((r) => r.p99Ms)),
      redisCores: median(rs.map((r) => r.redisCores)),
    };
  });
  const alwaysOverEverysec = pairedRatio(
    runs.get('always')!.map((r) => r.reqPerSec),
    runs.get('everysec')!.map((r) => r.reqPerSec),
  );
  log(`  appendfsync always / everysec: ${(alwaysOverEverysec * 100).toFixed(1)} % of the req/s (median of ${settings.durability.runs} paired rounds)`);
  return { modes, alwaysOverEverysec, aofDir, aofFilesystem, notes };
}

/**
 * Scenario 8: what acks that survive a failover cost (REDIS_ACK_REPLICAS, issue #14). With
 * `REDIS_ACK_REPLICAS=1` the gateway follows each batch it writes with `WAIT 1 <budget>` on the same
 * connection and answers `success` only when the replica confirmed it; with `0` (the default) it
 * answers as soon as the master holds it.
 *
 * The bench's Redis gets a replica on this machine (`redis-server --replicaof`, same settings), and
 * two gateways run against them, one with each setting; both see the same replica attached, so the
 * difference is WAIT's alone (the replication stream is there in both). Same closed loop as
 * scenario 1 (wrk, plain mode, 64 connections); rounds interleave the two gateways (alternating which
 * goes first) so that drift in the machine's load hits both alike, and the ratio is taken run by run.
 */
import { envDefault } from '@wxrelay/shared';
import type { BenchRedis, Server } from '../infra.ts';
import { startBenchReplica, startGateway } from '../infra.ts';
import { log } from '../log.ts';
import { plainQuery, textTemplate } from '../payloads.ts';
import { cpuSeconds } from '../procs.ts';
import type { Settings } from '../settings.ts';
import { median, pairedRatio } from '../stats.ts';
import { runWrk, type WrkResult } from '../wrk.ts';

export const ACK_REPLICAS = [0, 1] as const;
export type AckReplicas = (typeof ACK_REPLICAS)[number];

export interface AcksRun extends WrkResult {
  readonly gatewayCores: number;
  readonly redisCores: number;
  readonly replicaCores: number;
}

export interface AcksModeResult {
  readonly ackReplicas: AckReplicas;
  readonly runs: AcksRun[];
  readonly reqPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly gatewayCores: number;
  readonly redisCores: number;
  readonly replicaCores: number;
  /** Non-2xx answers and socket errors over all runs (a 503 is a shortfall or a timeout). */
  readonly errors: number;
}

export interface AcksResult {
  /** When this scenario ran, how it was started, on what commit, and the load before it. */
  readonly ranAt: string;
  readonly command: string;
  readonly commit: string;
  readonly loadBefore: readonly number[];
  readonly quick: boolean;
  readonly enqueueTimeoutMs: number;
  readonly modes: AcksModeResult[];
  /** REDIS_ACK_REPLICAS=1 req/s over =0 req/s, pair by pair, median. */
  readonly oneOverZero: number;
  /** p99 with =1 minus p99 with =0, pair by pair, median (ms). */
  readonly p99DeltaMs: number;
  readonly notes: string[];
}

export async function runAckReplicasScenario(
  redis: BenchRedis,
  settings: Settings,
  runTagBase: number,
  meta: Pick<AcksResult, 'command' | 'commit' | 'loadBefore' | 'quick'>,
): Promise<AcksResult> {
  const s = settings.closed;
  const notes: string[] = [];
  const ranAt = new Date().toISOString();
  const replica = await startBenchReplica(redis);
  const gateways = new Map<AckReplicas, Server>();
  try {
    for (const k of ACK_REPLICAS) gateways.set(k, await startGateway(redis.url, [], { REDIS_ACK_REPLICAS: String(k) }, `wxrelay gateway, REDIS_ACK_REPLICAS=${k}`));
    const { head, tail } = textTemplate();
    const args = (tag: number): string[] => [plainQuery().path, head, tail, String(tag)];
    const runs = new Map<AckReplicas, AcksRun[]>(ACK_REPLICAS.map((k) => [k, []]));
    let tag = runTagBase;
    for (let round = 0; round < settings.acks.runs; round++) {
      const order = round % 2 === 0 ? ACK_REPLICAS : [...ACK_REPLICAS].reverse();
      for (const k of order) {
        const gateway = gateways.get(k)!;
        await redis.reset();
        await runWrk({ port: gateway.port, script: 'plain.lua', args: args(tag++), connections: s.connections, threads: s.threads, durationS: s.warmupS });
        await redis.reset();
        const cpu0 = cpuSeconds(gateway.child.pid);
        const rcpu0 = cpuSeconds(redis.pid);
        const repcpu0 = cpuSeconds(replica.pid);
        const r = await runWrk({ port: gateway.port, script: 'plain.lua', args: args(tag++), connections: s.connections, threads: s.threads, durationS: s.durationS });
        const run: AcksRun = {
          ...r,
          gatewayCores: (cpuSeconds(gateway.child.pid) - cpu0) / r.durationS,
          redisCores: (cpuSeconds(redis.pid) - rcpu0) / r.durationS,
          replicaCores: (cpuSeconds(replica.pid) - repcpu0) / r.durationS,
        };
        runs.get(k)!.push(run);
        if (r.errors > 0) notes.push(`acks, REDIS_ACK_REPLICAS=${k}, round ${round + 1}: ${r.errorDetail}`);
        log(
          `  round ${round + 1} REDIS_ACK_REPLICAS=${k}: ${r.reqPerSec.toFixed(0)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, ` +
            `gateway cpu ${run.gatewayCores.toFixed(2)}, redis ${run.redisCores.toFixed(2)}, replica ${run.replicaCores.toFixed(2)}${r.errors > 0 ? `, ERRORS ${r.errorDetail}` : ''}`,
        );
      }
    }
    await redis.reset();
    const modes = ACK_REPLICAS.map((ackReplicas): AcksModeResult => {
      const rs = runs.get(ackReplicas)!;
      return {
        ackReplicas,
        runs: rs,
        reqPerSec: median(rs.map((r) => r.reqPerSec)),
        p50Ms: median(rs.map((r) => r.p50Ms)),
        p99Ms: median(rs.map((r) => r.p99Ms)),
        gatewayCores: median(rs.map((r) => r.gatewayCores)),
        redisCores: median(rs.map((r) => r.redisCores)),
        replicaCores: median(rs.map((r) => r.replicaCores)),
        errors: rs.reduce((sum, r) => sum + r.errors, 0),
      };
    });
    const one = runs.get(1)!;
    const zero = runs.get(0)!;
    const oneOverZero = pairedRatio(one.map((r) => r.reqPerSec), zero.map((r) => r.reqPerSec));
    const p99DeltaMs = median(one.map((r, i) => r.p99Ms - (zero[i]?.p99Ms ?? Number.NaN)));
    log(`  REDIS_ACK_REPLICAS=1 / 0: ${(oneOverZero * 100).toFixed(1)} % of the req/s, p99 ${p99DeltaMs >= 0 ? '+' : ''}${p99DeltaMs.toFixed(2)} ms (medians of ${settings.acks.runs} paired rounds)`);
    return { ranAt, ...meta, enqueueTimeoutMs: envDefault('ENQUEUE_TIMEOUT_MS'), modes, oneOverZero, p99DeltaMs, notes };
  } finally {
    await Promise.all([...gateways.values()].map((g) => g.child.stop()));
    await replica.close();
  }
}

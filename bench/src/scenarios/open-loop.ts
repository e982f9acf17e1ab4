/**
 * Scenario 3: the gateway under a fixed arrival rate (1 k and 5 k msg/s), from a rate-controlled
 * generator on raw sockets. Latency runs from each request's scheduled send time, so a stall in the
 * gateway is charged to every request that should have gone out meanwhile (no coordinated omission).
 */
import type { BenchRedis, Server } from '../infra.ts';
import { runOpenLoop } from '../load/http-load.ts';
import { log } from '../log.ts';
import { sameUserRequests } from '../payloads.ts';
import { cpuSeconds } from '../procs.ts';
import type { Settings } from '../settings.ts';
import { median, medianSummary, nowMs, summarize, type LatencySummary } from '../stats.ts';

export interface OpenRun {
  readonly sent: number;
  readonly errors: number;
  /** Ack latency from the scheduled send time, ms. */
  readonly ack: LatencySummary;
  /** How late the generator's own timer got round to requests (due − scheduled), ms. */
  readonly lag: LatencySummary;
  /** How long requests waited for a free connection (sent − due), ms: the server's doing. */
  readonly connWait: LatencySummary;
  readonly achievedRate: number;
  readonly gatewayCores: number;
  readonly redisCores: number;
}

export interface OpenRateResult {
  readonly rate: number;
  readonly runs: OpenRun[];
  readonly ack: LatencySummary;
  readonly lag: LatencySummary;
  readonly connWait: LatencySummary;
  readonly gatewayCores: number;
}

export async function runOpenLoopScenario(gateway: Server, redis: BenchRedis, settings: Settings, runTagBase: number): Promise<OpenRateResult[]> {
  const s = settings.open;
  const results: OpenRateResult[] = [];
  let tag = runTagBase;
  for (const rate of s.rates) {
    const runs: OpenRun[] = [];
    for (let run = 0; run < s.runs; run++) {
      await redis.reset();
      const warm = Math.round(rate * s.warmupS);
      const count = warm + Math.round(rate * s.durationS);
      const cpu0 = cpuSeconds(gateway.child.pid);
      const rcpu0 = cpuSeconds(redis.pid);
      const t0 = nowMs();
      const r = await runOpenLoop({ port: gateway.port, connections: s.connections, rate, count, makeRequest: sameUserRequests(gateway.port, tag++) });
      const elapsedS = (nowMs() - t0) / 1000;
      const ack: number[] = [];
      const lag: number[] = [];
      const connWait: number[] = [];
      let first = Number.POSITIVE_INFINITY;
      let last = 0;
      for (let i = warm; i < count; i++) {
        ack.push(r.ok[i] === 1 ? r.ackAt[i]! - r.scheduledAt[i]! : Number.POSITIVE_INFINITY);
        lag.push(r.dueAt[i]! - r.scheduledAt[i]!);
        connWait.push(r.sentAt[i]! - r.dueAt[i]!);
        first = Math.min(first, r.sentAt[i]!);
        last = Math.max(last, r.sentAt[i]!);
      }
      const result: OpenRun = {
        sent: count - warm,
        errors: r.errors,
        ack: summarize(ack),
        lag: summarize(lag),
        connWait: summarize(connWait),
        achievedRate: (count - warm - 1) / ((last - first) / 1000),
        gatewayCores: (cpuSeconds(gateway.child.pid) - cpu0) / elapsedS,
        redisCores: (cpuSeconds(redis.pid) - rcpu0) / elapsedS,
      };
      runs.push(result);
      log(`  ${rate} msg/s run ${run + 1}: ack p50 ${result.ack.p50.toFixed(2)} ms, p99 ${result.ack.p99.toFixed(2)} ms, max ${result.ack.max.toFixed(1)} ms, generator lag p99 ${result.lag.p99.toFixed(2)} ms, wait for a connection p99 ${result.connWait.p99.toFixed(2)} ms, errors ${r.errors}`);
    }
    results.push({
      rate,
      runs,
      ack: medianSummary(runs.map((r) => r.ack)),
      lag: medianSummary(runs.map((r) => r.lag)),
      connWait: medianSummary(runs.map((r) => r.connWait)),
      gatewayCores: median(runs.map((r) => r.gatewayCores)),
    });
  }
  await redis.reset();
  return results;
}

/**
 * Scenario 4: the whole pipeline. Gateway + N workers (the echo handler: no LLM_BASE_URL, the
 * no-op handler) + the simulator's fake WeChat API in its own process. Each message comes from its
 * own user with a token in its text; the fake stamps each customer-service send as it accepts it.
 *
 * - latency: 1 k msg/s open loop; POST scheduled → send accepted by the fake API, p50 / p99;
 * - drain: a 20 k-message burst through the gateway (64 connections, as fast as it acks), workers
 *   already running; time from the first POST to the last send.
 */
import type { BenchRedis, Fakes, Server } from '../infra.ts';
import { startWorkers, stopAll } from '../infra.ts';
import { runClosedLoop, runOpenLoop } from '../load/http-load.ts';
import { log } from '../log.ts';
import { perUserRequests } from '../payloads.ts';
import type { Child } from '../procs.ts';
import type { Settings } from '../settings.ts';
import { median, medianSummary, summarize, type LatencySummary } from '../stats.ts';

export interface E2eLatencyRun {
  readonly sent: number;
  readonly delivered: number;
  readonly errors: number;
  /** POST scheduled → customer-service send accepted, ms. */
  readonly e2e: LatencySummary;
  readonly ack: LatencySummary;
}

export interface DrainRun {
  readonly messages: number;
  readonly delivered: number;
  readonly ackErrors: number;
  /** First POST → last ack (the gateway has queued all), s. */
  readonly enqueueS: number;
  /** First POST → last customer-service send, s. */
  readonly drainS: number;
  readonly throughput: number;
}

export interface E2eWorkersResult {
  readonly workers: number;
  readonly concurrency: number;
  readonly latencyRuns: E2eLatencyRun[];
  readonly e2e: LatencySummary;
  readonly ack: LatencySummary;
  readonly drainRuns: DrainRun[];
  readonly drainS: number;
  readonly enqueueS: number;
  readonly throughput: number;
}

/** Sends `count` messages through the gateway at `rate` and waits for every reply. */
async function latencyRun(gateway: Server, fakes: Fakes, rate: number, warm: number, count: number, tag: number): Promise<E2eLatencyRun> {
  await fakes.reset();
  const r = await runOpenLoop({ port: gateway.port, connections: 64, rate, count, makeRequest: perUserRequests(gateway.port, tag, 'oE2e') });
  const got = await fakes.collect(count, 60_000);
  const deliveredAt = new Float64Array(count).fill(Number.NaN);
  got.tokens.forEach((token, k) => {
    if (token >= 0 && token < count && Number.isNaN(deliveredAt[token]!)) deliveredAt[token] = got.at[k]!;
  });
  const e2e: number[] = [];
  const ack: number[] = [];
  for (let i = warm; i < count; i++) {
    e2e.push(Number.isNaN(deliveredAt[i]!) ? Number.POSITIVE_INFINITY : deliveredAt[i]! - r.scheduledAt[i]!);
    ack.push(r.ok[i] === 1 ? r.ackAt[i]! - r.scheduledAt[i]! : Number.POSITIVE_INFINITY);
  }
  return { sent: count - warm, delivered: got.total, errors: r.errors, e2e: summarize(e2e), ack: summarize(ack) };
}

async function drainRun(gateway: Server, fakes: Fakes, messages: number, connections: number, tag: number): Promise<DrainRun> {
  await fakes.reset();
  const r = await runClosedLoop({ port: gateway.port, connections, count: messages, makeRequest: perUserRequests(gateway.port, tag, 'oDrain') });
  let lastAck = 0;
  for (const t of r.ackAt) if (t > lastAck) lastAck = t;
  const got = await fakes.collect(messages, 300_000);
  const lastDelivery = got.at.reduce((a, b) => Math.max(a, b), 0);
  const drainS = (lastDelivery - r.startedAt) / 1000;
  return { messages, delivered: got.total, ackErrors: r.errors, enqueueS: (lastAck - r.startedAt) / 1000, drainS, throughput: got.total / drainS };
}

export async function runEndToEndScenario(gateway: Server, redis: BenchRedis, fakes: Fakes, settings: Settings, runTagBase: number): Promise<E2eWorkersResult[]> {
  const s = settings.e2e;
  const results: E2eWorkersResult[] = [];
  let tag = runTagBase;
  for (const workers of s.workerCounts) {
    await redis.reset();
    await fakes.reset();
    const children: Child[] = await startWorkers(workers, redis.url, fakes.apiUrl, s.concurrency);
    try {
      // Warm-up at the measured rate (the access token, connections, JIT of every process), so
      // that a cold worker's backlog does not spill into the first measured run.
      await latencyRun(gateway, fakes, s.rate, 0, Math.round(s.rate * 2), tag++);
      const latencyRuns: E2eLatencyRun[] = [];
      for (let run = 0; run < s.runs; run++) {
        const warm = Math.round(s.rate * s.warmupS);
        const r = await latencyRun(gateway, fakes, s.rate, warm, warm + Math.round(s.rate * s.durationS), tag++);
        latencyRuns.push(r);
        log(`  ${workers} worker(s) ${s.rate} msg/s run ${run + 1}: e2e p50 ${r.e2e.p50.toFixed(2)} ms, p99 ${r.e2e.p99.toFixed(2)} ms (ack p50 ${r.ack.p50.toFixed(2)}), delivered ${r.delivered}, errors ${r.errors}`);
      }
      const drainRuns: DrainRun[] = [];
      for (let run = 0; run < s.runs; run++) {
        const d = await drainRun(gateway, fakes, s.burst, s.burstConnections, tag++);
        drainRuns.push(d);
        log(`  ${workers} worker(s) ${s.burst} burst run ${run + 1}: queued in ${d.enqueueS.toFixed(2)} s, drained in ${d.drainS.toFixed(2)} s (${d.throughput.toFixed(0)} msg/s), delivered ${d.delivered}, ack errors ${d.ackErrors}`);
      }
      results.push({
        workers,
        concurrency: s.concurrency,
        latencyRuns,
        e2e: medianSummary(latencyRuns.map((r) => r.e2e)),
        ack: medianSummary(latencyRuns.map((r) => r.ack)),
        drainRuns,
        drainS: median(drainRuns.map((d) => d.drainS)),
        enqueueS: median(drainRuns.map((d) => d.enqueueS)),
        throughput: median(drainRuns.map((d) => d.throughput)),
      });
    } finally {
      await stopAll(children);
    }
  }
  await redis.reset();
  return results;
}

/**
 * Scenario 5: a slow handler. The fake LLM answers after 5 s; 1,000 distinct users write at the
 * same moment (1,000 connections, every request written in one synchronous loop). Every ack must
 * come within 50 ms, and every user must get the LLM's answer; tried with several worker layouts.
 *
 * The same burst also goes to bare fastify (answering `success` at once, nothing else): the ceiling
 * for this machine, which says how much of the ack time is the HTTP server's and the kernel's.
 */
import type { BenchRedis, Fakes, Server } from '../infra.ts';
import { startWorkers, stopAll } from '../infra.ts';
import { runClosedLoop } from '../load/http-load.ts';
import { log } from '../log.ts';
import { perUserRequests } from '../payloads.ts';
import type { Settings } from '../settings.ts';
import { median, summarize, type LatencySummary } from '../stats.ts';

export interface SlowRun {
  /** Ack latency from the moment the burst began (before the first write), ms. */
  readonly ackFromBurst: LatencySummary;
  /** Ack latency from each request's own write, ms. */
  readonly ackFromWrite: LatencySummary;
  readonly ackErrors: number;
  readonly usersAnswered: number;
  readonly deliveries: number;
  /** Burst start → last reply sent, s. */
  readonly totalS: number;
}

export interface SlowConfigResult {
  readonly workers: number;
  readonly concurrency: number;
  readonly runs: SlowRun[];
  readonly maxAckFromBurstMs: number;
  readonly maxAckFromWriteMs: number;
  readonly usersAnswered: number;
  readonly totalS: number;
  /** Every ack a `success`, every user answered, all within one LLM round (+ 2.5 s). (The 50 ms ack budget is a target of its own.) */
  readonly sufficed: boolean;
}

/** The burst alone against a server (no workers): ack latencies only. */
export interface BurstRun {
  readonly ackFromBurst: LatencySummary;
  readonly ackFromWrite: LatencySummary;
  readonly errors: number;
}

export interface BurstCeiling {
  readonly server: string;
  readonly runs: BurstRun[];
  readonly maxAckFromBurstMs: number;
  readonly maxAckFromWriteMs: number;
}

async function burst(server: Server, users: number, tag: number): Promise<BurstRun & { startedAt: number }> {
  const r = await runClosedLoop({ port: server.port, connections: users, count: users, makeRequest: perUserRequests(server.port, tag, 'oSlow', '你好') });
  const fromBurst: number[] = [];
  const fromWrite: number[] = [];
  for (let i = 0; i < users; i++) {
    fromBurst.push(r.ackAt[i]! - r.startedAt);
    fromWrite.push(r.ackAt[i]! - r.sentAt[i]!);
  }
  return { ackFromBurst: summarize(fromBurst), ackFromWrite: summarize(fromWrite), errors: r.errors, startedAt: r.startedAt };
}

/**
 * The burst against bare fastify, after one burst to warm it up (as the gateway is warmed by
 * {@link warmUpGateway}): the fastest any fastify server answers 1,000 requests at once here.
 */
export async function runBurstCeiling(bare: Server, settings: Settings, runTagBase: number): Promise<BurstCeiling> {
  const s = settings.slow;
  let tag = runTagBase;
  await burst(bare, s.users, tag++);
  const runs: BurstRun[] = [];
  for (let run = 0; run < s.runs; run++) {
    const { ackFromBurst, ackFromWrite, errors } = await burst(bare, s.users, tag++);
    runs.push({ ackFromBurst, ackFromWrite, errors });
    log(`  ${bare.name} (ceiling) run ${run + 1}: max ack ${ackFromBurst.max.toFixed(1)} ms from the burst (${ackFromWrite.max.toFixed(1)} ms from its write)${errors > 0 ? `, ${errors} errors` : ''}`);
  }
  return {
    server: bare.name,
    runs,
    maxAckFromBurstMs: median(runs.map((r) => r.ackFromBurst.max)),
    maxAckFromWriteMs: median(runs.map((r) => r.ackFromWrite.max)),
  };
}

/** One unmeasured burst with no worker running (its jobs are then dropped), so the gateway's code is compiled before it is timed. */
async function warmUpGateway(gateway: Server, redis: BenchRedis, users: number, tag: number): Promise<void> {
  await redis.reset();
  await burst(gateway, users, tag);
  await redis.reset();
}

export async function runSlowHandlerScenario(gateway: Server, redis: BenchRedis, fakes: Fakes, settings: Settings, runTagBase: number): Promise<SlowConfigResult[]> {
  const s = settings.slow;
  const results: SlowConfigResult[] = [];
  let tag = runTagBase;
  await warmUpGateway(gateway, redis, s.users, tag++);
  for (const config of s.configs) {
    await redis.reset();
    await fakes.reset();
    const children = await startWorkers(config.workers, redis.url, fakes.apiUrl, config.concurrency, fakes.llmUrl);
    try {
      const runs: SlowRun[] = [];
      for (let run = 0; run < s.runs; run++) {
        await fakes.reset();
        const r = await burst(gateway, s.users, tag++);
        const got = await fakes.collect(s.users, s.llmDelayMs * 4 + 30_000);
        const last = got.at.reduce((a, b) => Math.max(a, b), 0);
        const result: SlowRun = {
          ackFromBurst: r.ackFromBurst,
          ackFromWrite: r.ackFromWrite,
          ackErrors: r.errors,
          usersAnswered: got.users,
          deliveries: got.total,
          totalS: (last - r.startedAt) / 1000,
        };
        runs.push(result);
        log(`  ${config.workers} × ${config.concurrency} run ${run + 1}: max ack ${result.ackFromBurst.max.toFixed(1)} ms from the burst (${result.ackFromWrite.max.toFixed(1)} ms from its write), ${got.users}/${s.users} users answered in ${result.totalS.toFixed(2)} s`);
      }
      const maxAckFromBurstMs = median(runs.map((r) => r.ackFromBurst.max));
      const totalS = median(runs.map((r) => r.totalS));
      const usersAnswered = Math.min(...runs.map((r) => r.usersAnswered));
      results.push({
        ...config,
        runs,
        maxAckFromBurstMs,
        maxAckFromWriteMs: median(runs.map((r) => r.ackFromWrite.max)),
        usersAnswered,
        totalS,
        sufficed: runs.every((r) => r.ackErrors === 0 && r.usersAnswered === s.users && r.totalS * 1000 <= s.llmDelayMs + 2500),
      });
    } finally {
      await stopAll(children);
    }
  }
  await redis.reset();
  return results;
}

/**
 * Scenarios 1 and 2: closed loop with wrk, 64 connections, signed text pushes with unique MsgIds,
 * against bare fastify (the ceiling), co-wechat, wechat and the wxrelay gateway — plain mode (1)
 * and safe mode (2). Rounds interleave the servers (A B C D, A B C D, …) so that drift in the
 * machine's load hits every server alike, and ratios are taken run by run.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { buildCallbackRequest } from '@wxrelay/simulator';
import type { BenchRedis, Server } from '../infra.ts';
import { log } from '../log.ts';
import { msgIdFor, plainQuery, textTemplate, textXml, writeSafePool } from '../payloads.ts';
import { cpuSeconds } from '../procs.ts';
import { IDENTITY, type Settings } from '../settings.ts';
import { median, pairedRatio } from '../stats.ts';
import { runWrk, type WrkResult } from '../wrk.ts';

export type Mode = 'plain' | 'safe';

export interface ClosedRun extends WrkResult {
  /** CPU the server process used during the run, in cores (1.0 = one core busy). */
  readonly serverCores: number;
  /** CPU redis-server used during the run, in cores (gateway runs). */
  readonly redisCores: number;
}

export interface ClosedServerResult {
  readonly server: string;
  readonly runs: ClosedRun[];
  readonly reqPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly serverCores: number;
}

export interface ClosedScenarioResult {
  readonly mode: Mode;
  readonly servers: ClosedServerResult[];
  /** Gateway req/s over each other server's, pair by pair within the run. */
  readonly ratios: Record<string, number>;
  readonly notes: string[];
}

export interface ClosedServers {
  readonly bare: Server;
  readonly coWechat: Server;
  readonly wechat: Server;
  readonly gateway: Server;
}

export const RUNS_DIR = resolve(import.meta.dirname, '../../.runs');

/** One signed request to each server, checking it answers as it should before it is measured. */
async function preflight(server: Server, mode: Mode, isGateway: boolean, isCeiling: boolean): Promise<void> {
  const xml = textXml(msgIdFor(999, Math.floor(Math.random() * 1e9)));
  const request = buildCallbackRequest({
    gatewayUrl: `http://127.0.0.1:${server.port}/wx`,
    token: IDENTITY.token,
    appId: IDENTITY.appId,
    encodingAesKey: IDENTITY.encodingAesKey,
    mode,
    xml,
  });
  const res = await fetch(request.url, { method: 'POST', body: request.body, headers: { 'content-type': 'text/xml' } });
  const body = await res.text();
  const expected = isGateway || isCeiling ? body === 'success' : body.includes(mode === 'safe' ? '<Encrypt>' : '<Content>');
  if (res.status !== 200 || !expected) {
    throw new Error(`${server.name} (${mode}) answered ${res.status} ${body.slice(0, 200)}: refusing to benchmark it`);
  }
}

export async function runClosedLoopScenario(
  mode: Mode,
  servers: ClosedServers,
  redis: BenchRedis,
  settings: Settings,
  runTagBase: number,
): Promise<ClosedScenarioResult> {
  const s = settings.closed;
  const order = [servers.bare, servers.coWechat, servers.wechat, servers.gateway];
  const notes: string[] = [];
  for (const server of order) await preflight(server, mode, server === servers.gateway, server === servers.bare);

  let poolFile = '';
  let poolSignedAt = 0;
  const ensurePool = async (): Promise<void> => {
    // The pool's timestamp must stay inside the gateway's 300 s window: regenerate when it ages.
    if (mode !== 'safe' || (poolFile !== '' && Date.now() - poolSignedAt < 200_000)) return;
    mkdirSync(RUNS_DIR, { recursive: true });
    poolFile = resolve(RUNS_DIR, 'safe-pool.tsv');
    log(`  writing ${settings.safePool} encrypted callbacks to ${poolFile}`);
    poolSignedAt = await writeSafePool(poolFile, settings.safePool, runTagBase);
    if (!existsSync(poolFile)) throw new Error('safe pool not written');
  };

  const wrkArgs = (tag: number): string[] => {
    if (mode === 'safe') return [poolFile, String(s.threads)];
    const { head, tail } = textTemplate();
    return [plainQuery().path, head, tail, String(tag)];
  };

  const runs = new Map<Server, ClosedRun[]>(order.map((srv) => [srv, []]));
  let tag = runTagBase;
  for (let round = 0; round < s.runs; round++) {
    await ensurePool();
    for (const server of order) {
      const isGateway = server === servers.gateway;
      if (isGateway) await redis.reset();
      await runWrk({ port: server.port, script: mode === 'safe' ? 'pool.lua' : 'plain.lua', args: wrkArgs(tag++), connections: s.connections, threads: s.threads, durationS: s.warmupS });
      if (isGateway) await redis.reset();
      const cpu0 = cpuSeconds(server.child.pid);
      const rcpu0 = cpuSeconds(redis.pid);
      const r = await runWrk({ port: server.port, script: mode === 'safe' ? 'pool.lua' : 'plain.lua', args: wrkArgs(tag++), connections: s.connections, threads: s.threads, durationS: s.durationS });
      const run: ClosedRun = { ...r, serverCores: (cpuSeconds(server.child.pid) - cpu0) / r.durationS, redisCores: isGateway ? (cpuSeconds(redis.pid) - rcpu0) / r.durationS : Number.NaN };
      runs.get(server)!.push(run);
      if (r.errors > 0) notes.push(`${server.name} run ${round + 1}: ${r.errorDetail}`);
      if (mode === 'safe' && isGateway && r.requests > settings.safePool) {
        notes.push(`${server.name} run ${round + 1}: ${r.requests} requests > pool of ${settings.safePool}: MsgIds repeated (gateway answers them as duplicates)`);
      }
      log(`  ${mode} round ${round + 1} ${server.name}: ${r.reqPerSec.toFixed(0)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, cpu ${run.serverCores.toFixed(2)}${r.errors > 0 ? `, ERRORS ${r.errorDetail}` : ''}`);
    }
  }
  await redis.reset();

  const results: ClosedServerResult[] = order.map((server) => {
    const rs = runs.get(server)!;
    return {
      server: server.name,
      runs: rs,
      reqPerSec: median(rs.map((r) => r.reqPerSec)),
      p50Ms: median(rs.map((r) => r.p50Ms)),
      p99Ms: median(rs.map((r) => r.p99Ms)),
      serverCores: median(rs.map((r) => r.serverCores)),
    };
  });
  const gw = runs.get(servers.gateway)!.map((r) => r.reqPerSec);
  const ratios: Record<string, number> = {};
  for (const server of [servers.bare, servers.coWechat, servers.wechat]) {
    ratios[server.name] = pairedRatio(gw, runs.get(server)!.map((r) => r.reqPerSec));
  }
  return { mode, servers: results, ratios, notes };
}

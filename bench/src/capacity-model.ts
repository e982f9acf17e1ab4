/**
 * The capacity model (issue #14), computed from scenario 10's figures so that RESULTS.md and the
 * README rest on one measured run: messages/s per gateway core, per worker core and per Redis
 * shard, and how many of each for a given rate of callbacks.
 *
 * Every part is sized to run at {@link PLANNED_UTILISATION} of what it can do: the rest is headroom
 * for a campaign's spike above the planned rate, garbage collection, a failover's catch-up and the
 * machine's other work. A Redis shard is one core (its main thread runs every command and script).
 */
import type { CapacityResult, CapacityRun } from './scenarios/capacity.ts';
import { median } from './stats.ts';

export const PLANNED_UTILISATION = 0.6;
export const MODEL_RATES = [1_000, 10_000, 50_000] as const;

export interface CapacityFigures {
  /** CPU µs per message (median over every run of the scenario). */
  readonly gatewayUs: number;
  /** The worker's CPU µs per message: the larger of the per-process-count medians (2 processes on 2 shared cores pay for switching). */
  readonly workerUs: number;
  /** Redis CPU µs per message, queued by the gateway and worked by the workers. */
  readonly redisGatewayUs: number;
  readonly redisWorkerUs: number;
  /** Redis commands per message on each side. */
  readonly redisGatewayCommands: number;
  readonly redisWorkerCommands: number;
  /** Plain BullMQ with a no-op processor draining the same backlog: Redis µs and commands per job. */
  readonly floorRedisUs: number;
  readonly floorRedisCommands: number;
  readonly floorWorkerUs: number;
  /** The fake WeChat API's CPU per send (on this machine only: WeChat's own servers in production). */
  readonly fakeApiUs: number;
  /** Redis memory per queued message and per finished one (kept until the retention ends), bytes. */
  readonly queuedBytes: number;
  readonly doneBytes: number;
}

export interface CapacityRow {
  readonly rate: number;
  readonly gatewayCores: number;
  readonly workerProcesses: number;
  readonly redisShards: number;
  /** Redis memory for one minute of backlog (workers stopped or behind), GB. */
  readonly backlogMinuteGb: number;
}

export interface CapacityModel {
  readonly figures: CapacityFigures;
  /** Messages/s one part does at 100 % of one core. */
  readonly perGatewayCore: number;
  readonly perWorkerCore: number;
  readonly perRedisShard: number;
  readonly rows: CapacityRow[];
}

const pick = (runs: readonly CapacityRun[], f: (r: CapacityRun) => number): number => median(runs.map(f));

export function capacityFigures(c: CapacityResult): CapacityFigures {
  const counts = [...new Set(c.runs.map((r) => r.workers))];
  return {
    gatewayUs: pick(c.runs, (r) => r.gatewaySide.cpuUs.gateway!),
    workerUs: Math.max(...counts.map((n) => pick(c.runs.filter((r) => r.workers === n), (r) => r.workerSide.cpuUs.workers!))),
    redisGatewayUs: pick(c.runs, (r) => r.gatewaySide.cpuUs.redis!),
    redisWorkerUs: pick(c.runs, (r) => r.workerSide.cpuUs.redis!),
    redisGatewayCommands: pick(c.runs, (r) => r.gatewaySide.redisCommands),
    redisWorkerCommands: pick(c.runs, (r) => r.workerSide.redisCommands),
    floorRedisUs: median(c.floor.map((f) => f.side.cpuUs.redis!)),
    floorRedisCommands: median(c.floor.map((f) => f.side.redisCommands)),
    floorWorkerUs: median(c.floor.map((f) => f.side.cpuUs.workers!)),
    fakeApiUs: pick(c.runs, (r) => r.workerSide.cpuUs.fakes!),
    queuedBytes: pick(c.runs, (r) => r.memoryPerQueuedBytes),
    doneBytes: pick(c.runs, (r) => r.memoryPerDoneBytes),
  };
}

export function capacityModel(c: CapacityResult): CapacityModel {
  const figures = capacityFigures(c);
  const redisUs = figures.redisGatewayUs + figures.redisWorkerUs;
  const need = (rate: number, us: number): number => Math.max(1, Math.ceil((rate * us) / 1e6 / PLANNED_UTILISATION));
  return {
    figures,
    perGatewayCore: 1e6 / figures.gatewayUs,
    perWorkerCore: 1e6 / figures.workerUs,
    perRedisShard: 1e6 / redisUs,
    rows: MODEL_RATES.map((rate) => ({
      rate,
      gatewayCores: need(rate, figures.gatewayUs),
      workerProcesses: need(rate, figures.workerUs),
      redisShards: need(rate, redisUs),
      backlogMinuteGb: (rate * 60 * figures.queuedBytes) / 1e9,
    })),
  };
}

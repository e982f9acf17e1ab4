/** `pnpm soak`'s settings: the two profiles, the command line, and the schedule of process faults. */
import { parseArgs as parseCli } from 'node:util';

export type FaultKind = 'worker-kill' | 'worker-term' | 'redis-kill' | 'gateway-term' | 'gateway-kill';
const FAULT_CYCLE: readonly FaultKind[] = ['worker-kill', 'redis-kill', 'gateway-term', 'worker-term', 'gateway-kill'];

export interface SoakOptions {
  readonly profile: 'short' | 'long';
  readonly durationS: number;
  readonly rate: number;
  readonly users: number;
  readonly workers: number;
  /** BullMQ concurrency of each worker. */
  readonly concurrency: number;
  readonly arrivals: 'poisson' | 'fixed';
  /** Longest wait for the backlog once sending stops. */
  readonly drainS: number;
  /** One API fault and one LLM fault every this many ms (0: none). */
  readonly faultEveryMs: number;
  /** Process faults spread over the run (0: none). */
  readonly processFaults: number;
  readonly json: boolean;
  readonly keepLogs: boolean;
}

const PROFILES = {
  long: { durationS: 300, rate: 200, users: 2000, workers: 3, drainS: 120, faultEveryMs: 1000 },
  // ≤ 90 s in all, light enough for 2 shared cores while the rest of the test suite runs. Both
  // profiles give each user 0.1 msg/s: a backlog of 6 messages of one user (more answers than one
  // customer-service window allows when sent one by one) would take a minute-long outage.
  short: { durationS: 45, rate: 50, users: 500, workers: 3, drainS: 30, faultEveryMs: 1000 },
} as const;

export const USAGE = `pnpm soak [--short] [--duration S] [--rate MSG_PER_S] [--users N] [--workers N] [--concurrency N]
          [--arrivals poisson|fixed] [--drain S] [--fault-every MS] [--process-faults N] [--json] [--keep-logs]`;

export function parseArgs(argv: readonly string[]): SoakOptions {
  const { values } = parseCli({
    args: argv.filter((a) => a !== '--'),
    options: {
      short: { type: 'boolean', default: false },
      duration: { type: 'string' },
      rate: { type: 'string' },
      users: { type: 'string' },
      workers: { type: 'string' },
      concurrency: { type: 'string' },
      arrivals: { type: 'string' },
      drain: { type: 'string' },
      'fault-every': { type: 'string' },
      'process-faults': { type: 'string' },
      json: { type: 'boolean', default: false },
      'keep-logs': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const profile = values.short ? 'short' : 'long';
  const base = PROFILES[profile];
  const num = (name: string, raw: string | undefined, fallback: number, min: number, max: number): number => {
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < min || v > max) throw new Error(`--${name} must be a number from ${min} to ${max}, got ${raw}`);
    return v;
  };
  const durationS = num('duration', values.duration, base.durationS, 5, 24 * 3600);
  const arrivals = values.arrivals ?? 'poisson';
  if (arrivals !== 'poisson' && arrivals !== 'fixed') throw new Error(`--arrivals must be poisson or fixed, got ${arrivals}`);
  return {
    profile,
    durationS,
    rate: num('rate', values.rate, base.rate, 0.1, 20_000),
    users: Math.round(num('users', values.users, base.users, 1, 10_000_000)),
    workers: Math.round(num('workers', values.workers, base.workers, 1, 64)),
    concurrency: Math.round(num('concurrency', values.concurrency, 20, 1, 10_000)),
    arrivals,
    drainS: num('drain', values.drain, base.drainS, 1, 3600),
    faultEveryMs: num('fault-every', values['fault-every'], base.faultEveryMs, 0, 3_600_000),
    processFaults: Math.round(num('process-faults', values['process-faults'], Math.max(FAULT_CYCLE.length, Math.round(durationS / 25)), 0, 1000)),
    json: values.json,
    keepLogs: values['keep-logs'],
  };
}

/** `count` process faults, cycling through the kinds, evenly spread from 10 % to 80 % of the run. */
export function faultSchedule(durationS: number, count: number): { atS: number; kind: FaultKind }[] {
  if (count === 0) return [];
  const from = durationS * 0.1;
  const to = durationS * 0.8;
  const step = count === 1 ? 0 : (to - from) / (count - 1);
  return Array.from({ length: count }, (_, i) => ({ atS: Math.round((from + i * step) * 10) / 10, kind: FAULT_CYCLE[i % FAULT_CYCLE.length]! }));
}

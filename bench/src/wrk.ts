import { execFile, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const WRK_DIR = resolve(fileURLToPath(import.meta.url), '../../wrk');

/** What one wrk run measured (latencies in ms). */
export interface WrkResult {
  readonly reqPerSec: number;
  readonly requests: number;
  readonly durationS: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
  /** Socket errors, non-2xx/3xx answers and timeouts: a valid run has none. */
  readonly errors: number;
  readonly errorDetail: string;
}

/** The installed wrk's version line, or undefined when there is none. */
export function wrkVersion(): string | undefined {
  const r = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  if (r.error !== undefined) return undefined;
  return `${r.stdout}${r.stderr}`.split('\n')[0]?.trim();
}

export interface WrkRun {
  readonly port: number;
  readonly script: 'plain.lua' | 'pool.lua';
  readonly args: readonly string[];
  readonly connections: number;
  readonly threads: number;
  readonly durationS: number;
}

interface WrkJson {
  requests: number;
  duration_us: number;
  connect_errors: number;
  read_errors: number;
  write_errors: number;
  status_errors: number;
  timeouts: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
  mean_us: number;
}

/** Runs wrk once (closed loop: each connection sends its next request when the answer arrives). */
export function runWrk(run: WrkRun): Promise<WrkResult> {
  const argv = [
    `-t${run.threads}`,
    `-c${run.connections}`,
    `-d${run.durationS}s`,
    '--timeout', '10s',
    '-s', resolve(WRK_DIR, run.script),
    `http://127.0.0.1:${run.port}/wx`,
    '--',
    ...run.args,
  ];
  return new Promise((resolvePromise, reject) => {
    execFile('wrk', argv, { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err !== null) return reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
      const line = stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (line === undefined) return reject(new Error(`wrk printed no result:\n${stdout}\n${stderr}`));
      const j = JSON.parse(line.slice('WRK_JSON '.length)) as WrkJson;
      const durationS = j.duration_us / 1e6;
      const errors = j.connect_errors + j.read_errors + j.write_errors + j.status_errors + j.timeouts;
      resolvePromise({
        reqPerSec: j.requests / durationS,
        requests: j.requests,
        durationS,
        p50Ms: j.p50_us / 1000,
        p99Ms: j.p99_us / 1000,
        maxMs: j.max_us / 1000,
        meanMs: j.mean_us / 1000,
        errors,
        errorDetail: errors === 0 ? '' : `connect ${j.connect_errors}, read ${j.read_errors}, write ${j.write_errors}, non-2xx ${j.status_errors}, timeout ${j.timeouts}`,
      });
    });
  });
}

import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { REPO_ROOT } from './build.js';

export interface SpawnedService {
  readonly proc: ChildProcess;
  /** Every stdout line so far (the services log NDJSON). */
  readonly lines: readonly string[];
  readonly stderr: () => string;
  /** Resolves with the first line (past or future) matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** Sends a signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/**
 * Runs a built service (`node <entry>`) with the given environment, collecting its log lines.
 * `entry` is relative to the repo root, e.g. `services/gateway/dist/main.js`.
 */
export function spawnService(entry: string, env: Readonly<Record<string, string>>): SpawnedService {
  const proc = spawn(process.execPath, [resolve(REPO_ROOT, entry)], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  const watchers = new Set<{ pattern: RegExp; resolve: (line: string) => void }>();
  proc.stdout?.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      lines.push(line);
      for (const w of watchers) {
        if (w.pattern.test(line)) {
          watchers.delete(w);
          w.resolve(line);
        }
      }
    }
  });
  proc.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | string>((res) => proc.once('exit', (code, signal) => res(code ?? signal ?? -1)));

  return {
    proc,
    lines,
    stderr: () => stderr,
    exited,
    waitForLine(pattern, timeoutMs = 20_000) {
      const seen = lines.find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((res, reject) => {
        const w = { pattern, resolve: res };
        watchers.add(w);
        const timer = setTimeout(() => {
          watchers.delete(w);
          reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}; last lines: ${lines.slice(-5).join('\n')}`));
        }, timeoutMs);
        void exited.then(() => {
          if (watchers.has(w)) {
            clearTimeout(timer);
            watchers.delete(w);
            reject(new Error(`process exited before a line matching ${pattern}; stderr: ${stderr.slice(-2000)}`));
          }
        });
        const original = w.resolve;
        w.resolve = (line) => {
          clearTimeout(timer);
          original(line);
        };
      });
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

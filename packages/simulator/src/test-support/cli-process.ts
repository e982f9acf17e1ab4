import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built CLI, as `pnpm sim` runs it. */
export const CLI_ENTRY = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface CliProcess {
  readonly proc: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout matches `pattern`; rejects after `timeoutMs` or when the process exits first. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  readonly exited: Promise<number | null>;
}

/** Runs `node dist/cli.js ...args` as a real process. */
export function runCliProcess(args: readonly string[], env: Record<string, string> = {}): CliProcess {
  const proc = spawn(process.execPath, [CLI_ENTRY, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const watchers = new Set<() => void>();
  proc.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    for (const w of watchers) w();
  });
  proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForOutput(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (!pattern.test(out)) return;
          watchers.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          watchers.delete(check);
          reject(new Error(`no output matching ${pattern} within ${timeoutMs} ms; stdout: ${out}; stderr: ${err}`));
        }, timeoutMs);
        watchers.add(check);
        void exited.then(() => {
          if (!watchers.has(check)) return;
          check();
          if (watchers.delete(check)) {
            clearTimeout(timer);
            reject(new Error(`exited before output matching ${pattern}; stdout: ${out}; stderr: ${err}`));
          }
        });
        check();
      });
    },
  };
}

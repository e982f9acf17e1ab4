import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildIfStale } from '@wxrelay/testkit';

/**
 * `pnpm soak --short` as a real child process: the built gateway, three built workers and a
 * private Redis (AOF) under 45 s of WeChat-like load at 50 msg/s, with API and LLM faults, a
 * worker SIGKILL and SIGTERM, a Redis SIGKILL + restart and a gateway SIGTERM and SIGKILL. It must
 * lose nothing and answer nothing twice unless the worker said the send was in doubt.
 */
const root = resolve(import.meta.dirname, '..');

interface SoakJson {
  report: {
    sent: number;
    acked: number;
    givenUp: number;
    pending: number;
    answered: number;
    lost: number;
    duplicates: { total: number; inDoubt: number; other: number };
    misdelivered: number;
    failures: string[];
  };
  timeline: { kind: string }[];
  drained: boolean;
}

describe('pnpm soak --short', () => {
  beforeAll(() => {
    buildIfStale(['packages/testkit', 'packages/simulator', 'services/gateway', 'services/worker']);
  }, 300_000);

  it('loses nothing and duplicates nothing that was not in doubt, through crashes and faults', async () => {
    const child = spawn(process.execPath, [resolve(root, 'bench/src/soak/main.ts'), '--short', '--json'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((done) => child.once('exit', (c) => done(c)));
    const last = stdout.trim().split('\n').at(-1) ?? '';
    expect(code, stderr.slice(-6000)).toBe(0);
    const { report, timeline, drained } = JSON.parse(last) as SoakJson;

    expect(timeline.map((t) => t.kind).sort()).toEqual(['gateway-kill', 'gateway-term', 'redis-kill', 'worker-kill', 'worker-term']);
    expect(report.sent).toBeGreaterThan(1500);
    expect(report.acked).toBeGreaterThan(0);
    expect(report.acked + report.givenUp).toBe(report.sent);
    expect(report.pending).toBe(0);
    expect(report.lost).toBe(0);
    expect(report.answered).toBe(report.acked);
    expect(report.duplicates.other).toBe(0);
    expect(report.misdelivered).toBe(0);
    expect(report.failures).toEqual([]);
    expect(drained).toBe(true);
  }, 180_000);
});

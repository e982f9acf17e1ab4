/**
 * `pnpm soak`: a chaos soak of the built gateway and workers (see run.ts).
 *
 *   pnpm soak                    # 300 s at 200 msg/s, 2000 users, 3 workers, faults all along (~7 min)
 *   pnpm soak --short            # 45 s at 50 msg/s, 200 users (the test suite's profile, < 90 s)
 *   pnpm soak --duration 600 --rate 300 --users 5000 --workers 4 --json
 *
 * Exit 0: no loss and no duplicate that was not in doubt; 1: either was seen; 2: the soak itself failed.
 * Workspace packages are imported only after the build, so this file must not import them statically.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '../../..');

if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error !== undefined) {
  process.stderr.write('soak: redis-server not found. The soak starts its own Redis: apt-get install -y redis-server\n');
  process.exit(2);
}
if (!existsSync(resolve(REPO, 'packages/testkit/dist/index.js'))) {
  execFileSync('pnpm', ['--filter', './packages/testkit', 'run', 'build'], { cwd: REPO, stdio: ['ignore', process.stderr, 'inherit'] });
}
const { buildIfStale } = await import('@wxrelay/testkit');
buildIfStale(['packages/testkit', 'packages/simulator', 'services/gateway', 'services/worker']);

const { main } = await import('./run.ts');
try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 2;
}

/**
 * `pnpm bench`: checks the tools, builds what is stale, then runs every scenario and writes
 * bench/RESULTS.md and bench/results.json.
 *
 *   pnpm bench                 # the full run (a few minutes on 2 cores)
 *   pnpm bench --quick         # every scenario, briefly (for working on the harness)
 *   pnpm bench --only=1,3      # some scenarios (1 closed loop, 2 safe mode, 3 open loop, 4 end to end, 5 slow handler, 6 micro, 7 durability, 8 reply channels, 9 acks, 10 capacity)
 *   pnpm bench --only=durability  # scenario 7 alone: appendfsync always vs everysec
 *   pnpm bench --only=replies  # scenario 8 alone: REPLY_MODE passive and auto beside customer-service
 *   pnpm bench --only=acks     # scenario 9 alone: REDIS_ACK_REPLICAS=1 vs 0 with a local replica
 *   pnpm bench --only=capacity # scenario 10 alone: each side's cost per message, the capacity model's figures
 *   pnpm bench --profile       # CPU-profile the gateway, the worker and verify+parse even when every target is met
 *   pnpm bench --report-only   # re-render RESULTS.md from results.json and analysis.md (no measuring)
 *
 * Workspace packages are imported only after the build, so this file must not import them statically.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '../..');

function need(command: string, args: string[], hint: string): void {
  if (spawnSync(command, args, { stdio: 'ignore' }).error !== undefined) {
    process.stderr.write(`bench: ${command} not found. ${hint}\n`);
    process.exit(1);
  }
}

need('wrk', ['-v'], 'The closed-loop scenarios use wrk (a cheap C load generator): apt-get install -y wrk');
need('redis-server', ['--version'], 'The bench starts its own Redis: apt-get install -y redis-server');

// testkit holds buildIfStale itself, so it must exist before anything else is built.
if (!existsSync(resolve(REPO, 'packages/testkit/dist/index.js'))) {
  execFileSync('pnpm', ['--filter', './packages/testkit', 'run', 'build'], { cwd: REPO, stdio: 'inherit' });
}
const { buildIfStale } = await import('@wxrelay/testkit');
buildIfStale(['packages/testkit', 'packages/simulator', 'services/gateway', 'services/worker']);

const { runBench, parseArgs } = await import('./run.ts');
await runBench(parseArgs(process.argv.slice(2)));

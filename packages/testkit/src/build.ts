import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The monorepo root (the folder with pnpm-workspace.yaml). */
export const REPO_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('pnpm-workspace.yaml not found above testkit');
    dir = parent;
  }
  return dir;
})();

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * Makes sure the given workspaces (e.g. `services/gateway`) have a `dist/` at least as new as
 * their `src/` (and that of packages/shared), building them with pnpm when not. Tests that
 * spawn the real services as child processes call it first; CI has built already.
 */
export function buildIfStale(workspaces: readonly string[]): void {
  const all = ['packages/shared', ...workspaces];
  const stale = all.some((w) => {
    const dist = resolve(REPO_ROOT, w, 'dist');
    return !existsSync(dist) || newestMtime(resolve(REPO_ROOT, w, 'src')) > newestMtime(dist);
  });
  if (!stale) return;
  const filters = all.flatMap((w) => ['--filter', `./${w}`]);
  execFileSync('pnpm', [...filters, 'run', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
}

#!/usr/bin/env bash
# `npm start` / `npm test` (and `pnpm start` / `pnpm test`): from a fresh clone on a machine with
# only Node ≥ 18 and npm, to the running stack or a test run.
#   1. Node 24 and the pinned pnpm first on PATH (scripts/toolchain.sh: from the npm registry into
#      a cache folder; no root, no global install; nothing is fetched when they are already there).
#   2. `pnpm install --frozen-lockfile` when node_modules is missing or was installed from another
#      pnpm-lock.yaml than the one checked out.
#   3. `pnpm build` when a workspace's dist/ is missing or older than its src/.
#   4. start: `node scripts/start.ts`; test: `vitest run` (extra arguments go to vitest, e.g.
#      `npm test -- packages/testkit`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
  echo "usage: scripts/dev.sh start|test [arguments for start.ts or vitest]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in start | test) ;; *) usage ;; esac

# shellcheck source=scripts/toolchain.sh
source scripts/toolchain.sh

# `npm run` hands its own settings to the script as npm_config_* variables (prefix=/usr, nodedir=
# the system Node's headers, user_agent=npm/…). The toolchain's `npm pack` above is served by them
# (the same npm configuration as the npm that ran us: registry, cafile); pnpm would take them as
# its own settings, and a native build would use the wrong Node's headers. pnpm reads the .npmrc
# files itself: drop npm's copies from here on.
for name in $(compgen -e); do
  case "$name" in
    npm_config_* | npm_package_* | npm_lifecycle_* | npm_execpath | npm_node_execpath | npm_command | NODE) unset "$name" ;;
  esac
done

# pnpm keeps a copy of the lockfile it installed from in node_modules/.pnpm/lock.yaml; it leaves
# that copy alone when it finds nothing to do (a lockfile changed only in form), so a stamp of our
# own records the lockfile of the last install that succeeded here.
stamp=node_modules/.wxrelay-installed-lock.yaml
if ! cmp -s pnpm-lock.yaml node_modules/.pnpm/lock.yaml && ! cmp -s pnpm-lock.yaml "$stamp"; then
  echo "dev: installing dependencies (pnpm install --frozen-lockfile)" >&2
  pnpm install --frozen-lockfile
  cp pnpm-lock.yaml "$stamp"
fi

# The same rule as scripts/start.ts and the testkit's buildIfStale: dist/ older than src/ is stale.
if node -e '
  const fs = require("node:fs"), path = require("node:path");
  const newest = (dir) => fs.readdirSync(dir, { withFileTypes: true }).reduce((t, e) => {
    const p = path.join(dir, e.name);
    return Math.max(t, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
  }, 0);
  const built = ["packages", "services"]
    .flatMap((group) => fs.readdirSync(group).map((name) => path.join(group, name)))
    .filter((w) => fs.existsSync(path.join(w, "package.json")) && JSON.parse(fs.readFileSync(path.join(w, "package.json"), "utf8")).scripts?.build !== undefined);
  const stale = built.filter((w) => !fs.existsSync(path.join(w, "dist")) || newest(path.join(w, "src")) > newest(path.join(w, "dist")));
  if (stale.length > 0) console.error(`dev: building (pnpm build): ${stale.join(", ")} out of date`);
  process.exit(stale.length > 0 ? 0 : 1);
'; then
  pnpm build
fi

case "$command" in
  start) exec node scripts/start.ts "$@" ;;
  test) exec pnpm exec vitest run "$@" ;;
esac

import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources in tests (the `@wxrelay/source` export
// condition), so `pnpm test` needs no prior build and a stack trace points at the real file.
const conditions = ['@wxrelay/source', 'node', 'import', 'module', 'default'];

const workspaces = ['packages/shared', 'packages/testkit', 'packages/simulator', 'services/gateway', 'services/worker'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: conditions } },
  test: {
    projects: [
      ...workspaces.map((root) => ({
        extends: true as const,
        test: { name: root.split('/')[1], root },
      })),
      // The gateway's suite again on the producer's fallback path (Queue.addBulk); test/support.ts reads
      // the variable. bulk-add runs both paths itself; sigterm spawns the built gateway (default path);
      // the queue dashboard does not enqueue.
      {
        extends: true as const,
        test: { name: 'gateway-addBulk', root: 'services/gateway', env: { WXRELAY_PRODUCER: 'addBulk' }, exclude: ['test/bulk-add.test.ts', 'test/sigterm.test.ts', 'test/dashboard.test.ts', 'test/dashboard.browser.test.ts'] },
      },
      // Repository-level checks (compose file, docs) against what the services really read.
      { extends: true as const, test: { name: 'repo', root: '.', include: ['tests/**/*.test.ts'] } },
    ],
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    passWithNoTests: false,
  },
});

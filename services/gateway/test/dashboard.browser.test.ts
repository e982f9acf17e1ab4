import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMetricsServer, type MetricsServer } from '@wxrelay/shared';
import type { TestRedis } from '@wxrelay/testkit';
import { DASHBOARD_PATH, DASHBOARD_USER, dashboardRoutes } from '../src/dashboard.js';
import { captureLogs, startGateway, startRedis, type GatewayHarness } from './support.js';

const CHROMIUM = '/usr/bin/chromium';
const ADMIN = 'browser-adm1n';
const SCREENSHOT = '/tmp/wxrelay-bull-board.png';
// The chat page test's flags (packages/simulator/src/chat-page.browser.test.ts).
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('the queue dashboard in a browser', () => {
  let redis: TestRedis;
  let gw: GatewayHarness;
  let server: MetricsServer;
  let userDataDir: string;
  const contexts: BrowserContext[] = [];

  async function browse(credentials?: { username: string; password: string }): Promise<BrowserContext> {
    const dir = await mkdtemp(join(userDataDir, 'profile-'));
    const context = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1280, height: 800 },
      ...(credentials === undefined ? {} : { httpCredentials: credentials }),
    });
    contexts.push(context);
    return context;
  }

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium is needed for the dashboard test and was not found at ${CHROMIUM}: install it with \`apt-get install -y chromium\` (CI does).`);
    }
    redis = await startRedis();
    gw = await startGateway(redis);
    const registry = gw.app.metrics.registry;
    server = await startMetricsServer({
      host: '127.0.0.1',
      port: 0,
      render: () => registry.metrics(),
      contentType: registry.contentType,
      routes: [dashboardRoutes({ queue: gw.app.inboundQueue, token: ADMIN, actions: false, log: captureLogs().logger })],
    });
    userDataDir = await mkdtemp(join(tmpdir(), 'wxrelay-chromium-'));
  }, 60_000);

  afterAll(async () => {
    for (const c of contexts) await c.close();
    await server?.close();
    await gw?.close();
    await redis?.close();
    if (userDataDir !== undefined) await rm(userDataDir, { recursive: true, force: true });
  });

  it('without credentials, or with wrong ones, the browser is challenged and not let in', async () => {
    // Headless Chromium has no login dialog: a basic-auth challenge it cannot answer ends the navigation.
    for (const credentials of [undefined, { username: DASHBOARD_USER, password: 'wrong' }]) {
      const page = (await browse(credentials)).pages()[0]!;
      // No credentials: the navigation fails (ERR_INVALID_AUTH_CREDENTIALS); wrong ones: it ends on the 401.
      const outcome = await page.goto(`${server.origin}${DASHBOARD_PATH}`).then(
        async (res) => `${res?.status()} ${await res?.text()}`,
        (err: unknown) => (/ERR_INVALID_AUTH_CREDENTIALS/.test(String(err)) ? 'refused' : String(err)),
      );
      expect(['401 unauthorized', 'refused']).toContain(outcome);
    }
  }, 60_000);

  it('logged in with basic auth, shows the inbound queue by name (read-only)', async () => {
    const context = await browse({ username: DASHBOARD_USER, password: ADMIN });
    const page = context.pages()[0] ?? (await context.newPage());
    const res = await page.goto(`${server.origin}${DASHBOARD_PATH}`);
    expect(res?.status()).toBe(200);
    // Bull Board's UI loads its scripts and then the queue list from its API, each request
    // carrying the same credentials.
    await page.getByText(gw.app.inboundQueue.name, { exact: false }).first().waitFor({ timeout: 20_000 });
    await page.screenshot({ path: SCREENSHOT });
    expect(await page.title()).toContain('wxrelay queues');
  }, 60_000);
});

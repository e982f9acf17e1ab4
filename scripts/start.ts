/**
 * `pnpm start`: the whole stack on one machine, no Docker.
 *
 * Redis (REDIS_URL, or an embedded redis-server child with AOF on, data in .wxrelay/redis, or
 * under WXRELAY_DATA_DIR), the
 * gateway, one worker and the WeChat simulator, wired together. Without real WeChat credentials
 * the worker talks to the simulator's WeChat API, so the chat page at the printed URL works out of
 * the box; with real WECHAT_* values (in the environment or .env) the same command serves a real
 * Official Account. Ctrl-C stops everything, in order.
 *
 * `pnpm start -- --reply-mode=passive` (or REPLY_MODE) picks how answers reach users; the gateway
 * and the worker get it, the chat page shows it. `--unverified` / `--verified` (or SIM_UNVERIFIED)
 * say whether the simulator plays an account without the customer-service API; by default it does
 * exactly in passive mode (start-options.ts).
 *
 * Runs with plain `node` (type stripping), and builds the workspace first when a service's dist/ is
 * missing or older than its sources; only then does it import from it (the variables' defaults,
 * from the built config table).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as SharedConfig from '../packages/shared/src/config.ts';
import { START_USAGE, StartUsageError, resolveStartOptions, type StartOptions } from './start-options.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = (text: string): boolean => process.stdout.write(`${text}\n`);
const fail = (text: string): never => {
  process.stderr.write(`pnpm start: ${text}\n`);
  process.exit(1);
};

/** The simulator's development identity: any values work as long as every part shares them. */
const DEV = {
  WECHAT_TOKEN: 'wxrelaydev',
  WECHAT_APP_ID: 'wx00000000devrelay',
  WECHAT_APP_SECRET: 'wxrelay-dev-secret',
  WECHAT_ENCODING_AES_KEY: 'wxrelayDevKey000000000000000000000000000000',
} as const;

function newest(dir: string): number {
  if (!existsSync(dir)) return 0;
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function buildIfNeeded(): void {
  const parts = ['packages/shared', 'packages/simulator', 'services/gateway', 'services/worker'];
  const stale = parts.some((p) => newest(join(root, p, 'src')) > newest(join(root, p, 'dist')));
  if (!stale) return;
  out('building (pnpm build)…');
  const r = spawnSync('pnpm', ['build'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) fail('the build failed');
}

async function freePort(preferred: number): Promise<number> {
  const tryPort = (port: number): Promise<number | undefined> =>
    new Promise((res) => {
      const srv = createServer();
      srv.once('error', () => res(undefined));
      srv.listen(port, '127.0.0.1', () => {
        const a = srv.address();
        srv.close(() => res(typeof a === 'object' && a !== null ? a.port : undefined));
      });
    });
  return (await tryPort(preferred)) ?? (await tryPort(0)) ?? fail('no free port');
}

async function waitFor(what: string, check: () => Promise<boolean>, child: ChildProcess, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) fail(`${what} exited with code ${child.exitCode} (see its output above)`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`${what} did not come up within ${timeoutMs / 1000} s`);
}

const children: { name: string; proc: ChildProcess }[] = [];

function run(name: string, command: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  // Each child in its own process group: a terminal's Ctrl-C reaches only this script, which then
  // stops them in order. In the terminal's group, Redis would get SIGINT with everyone else and
  // exit before the worker had drained (the worker then logs connection errors until it gives up).
  const proc = spawn(command, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const tag = `[${name}]`.padEnd(12);
  for (const stream of [proc.stdout, proc.stderr]) {
    let partial = '';
    stream?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) if (l.trim() !== '') out(`${tag} ${l}`);
    });
  }
  children.push({ name, proc });
  return proc;
}

let stopping = false;
async function stopAll(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  out('stopping: simulator, gateway, worker, then redis…');
  // Intake first (simulator, gateway), then the worker drains, then Redis writes its AOF and exits.
  for (const name of ['simulator', 'gateway', 'worker', 'redis']) {
    const c = children.find((x) => x.name === name);
    if (c === undefined || c.proc.exitCode !== null || c.proc.signalCode !== null) continue;
    const exited = new Promise((r) => c.proc.once('exit', r));
    c.proc.kill('SIGTERM');
    const timer = setTimeout(() => c.proc.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
  process.exit(code);
}

/** What the chosen reply mode and account mean, for the banner. */
function describeReplyMode({ replyMode, unverified, unverifiedFrom }: StartOptions): string[] {
  const how = {
    'customer-service': '`success` at once, answers through the customer-service API',
    passive: "answers in WeChat's held request (3 tries), then a placeholder and the user's inbox",
    auto: 'fast answers passively, slow ones through the customer-service API',
  }[replyMode];
  const why = unverifiedFrom === 'flag' ? '' : unverifiedFrom === 'env' ? ' (SIM_UNVERIFIED)' : unverified ? ' (passive mode; --verified to change)' : '';
  return [
    `  reply mode (REPLY_MODE):    ${replyMode}: ${how}`,
    `  simulated account:          ${unverified ? 'unverified, custom/send and typing answer 48001' : 'verified (customer-service API allowed)'}${why}`,
  ];
}

async function main(): Promise<void> {
  if (existsSync(join(root, '.env'))) process.loadEnvFile(join(root, '.env'));
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(env)) if (v === '') delete env[k];
  let options: StartOptions;
  try {
    options = resolveStartOptions(process.argv.slice(2), env);
  } catch (err) {
    if (!(err instanceof StartUsageError)) throw err;
    process.stderr.write(`pnpm start: ${err.message}\n`);
    process.exit(2);
  }
  if (options.help) {
    out(START_USAGE);
    process.exit(0);
  }
  // The gateway and the worker must agree on it; the simulator only shows it.
  env.REPLY_MODE = options.replyMode;

  const real = env.WECHAT_APP_SECRET !== undefined && env.WECHAT_APP_ID !== undefined && env.WECHAT_TOKEN !== undefined;
  if (!real) Object.assign(env, DEV);
  buildIfNeeded();
  const { envDefault } = (await import(pathToFileURL(join(root, 'packages/shared/dist/config.js')).href)) as typeof SharedConfig;

  // Redis: the configured one, or an embedded child.
  if (env.REDIS_URL === undefined) {
    if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0) {
      fail('no REDIS_URL is set and no redis-server is installed. Install one (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis) or set REDIS_URL=redis://host:6379.');
    }
    const dir = join(env.WXRELAY_DATA_DIR ?? join(root, '.wxrelay'), 'redis');
    mkdirSync(dir, { recursive: true });
    const port = await freePort(6399);
    const redis = run('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--maxmemory-policy', 'noeviction'], env);
    env.REDIS_URL = `redis://127.0.0.1:${port}`;
    await waitFor('redis', () => Promise.resolve(spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG'), redis);
  }

  const gatewayPort = await freePort(Number(env.PORT ?? envDefault('PORT')));
  const simPort = await freePort(Number(env.SIM_PORT ?? 4000));
  // Each process its own metrics port (both on one METRICS_PORT would leave one without metrics);
  // METRICS_PORT=0 keeps them off.
  const metricsOff = env.METRICS_PORT === '0';
  const gatewayMetricsPort = metricsOff ? 0 : await freePort(Number(env.METRICS_PORT ?? envDefault('METRICS_PORT', 'gateway')));
  let workerMetricsPort = metricsOff ? 0 : await freePort(env.METRICS_PORT === undefined ? envDefault('METRICS_PORT', 'worker') : 0);
  if (!metricsOff && workerMetricsPort === gatewayMetricsPort) workerMetricsPort = await freePort(0);
  const metricsHost = env.METRICS_HOST ?? envDefault('METRICS_HOST');
  const simUrl = `http://127.0.0.1:${simPort}`;
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;

  // The queue dashboard on the gateway's metrics listener: ADMIN_TOKEN from the environment or
  // .env, else a random one for this run (printed below with the URL).
  const adminToken = metricsOff ? undefined : (env.ADMIN_TOKEN ?? randomBytes(12).toString('base64url'));
  const dashboardUrl = `http://${metricsHost}:${gatewayMetricsPort}/admin/queues`;

  const gateway = run('gateway', process.execPath, ['services/gateway/dist/main.js'], {
    ...env,
    PORT: String(gatewayPort),
    METRICS_PORT: String(gatewayMetricsPort),
    ...(adminToken === undefined ? {} : { ADMIN_TOKEN: adminToken }),
  });
  await waitFor('gateway', async () => (await fetch(`${gatewayUrl}/healthz`)).ok, gateway);

  run('worker', process.execPath, ['services/worker/dist/main.js'], {
    ...env,
    METRICS_PORT: String(workerMetricsPort),
    ...(real ? {} : { WECHAT_API_BASE_URL: simUrl }),
  });
  const simulator = run('simulator', process.execPath, ['packages/simulator/dist/cli.js', 'serve'], {
    ...env,
    SIM_PORT: String(simPort),
    SIM_HOST: '127.0.0.1',
    SIM_GATEWAY_URL: `${gatewayUrl}/wx`,
    SIM_UNVERIFIED: String(options.unverified),
  });
  await waitFor('simulator', async () => (await fetch(`${simUrl}/`)).ok, simulator);

  out('');
  out(`  chat page (the simulator):  ${simUrl}/`);
  if (adminToken !== undefined) {
    const access = /^(true|1|yes|on)$/i.test(env.ADMIN_ACTIONS ?? '') ? 'actions allowed' : 'read-only';
    out(`  queue dashboard (private):  ${dashboardUrl} (log in as admin, password ${env.ADMIN_TOKEN === undefined ? adminToken : 'your ADMIN_TOKEN'}; ${access})`);
  }
  out(`  gateway (WeChat's URL):     ${gatewayUrl}/wx`);
  out(`  redis:                      ${env.REDIS_URL}`);
  if (!metricsOff) out(`  metrics (private):          http://${metricsHost}:${gatewayMetricsPort}/metrics (gateway), http://${metricsHost}:${workerMetricsPort}/metrics (worker)`);
  out(real ? '  mode: real WeChat credentials; the worker talks to the real WeChat API' : '  mode: development; the worker talks to the simulator (set WECHAT_* in .env for a real account)');
  for (const line of describeReplyMode(options)) out(line);
  out('  Ctrl-C stops everything.');
  out('');
  out(`READY ${JSON.stringify({ chat: `${simUrl}/`, gateway: `${gatewayUrl}/wx`, redis: env.REDIS_URL, replyMode: options.replyMode, unverified: options.unverified })}`);

  for (const c of children) {
    c.proc.once('exit', (code) => {
      if (!stopping) {
        process.stderr.write(`pnpm start: ${c.name} exited (code ${code}); stopping the rest\n`);
        void stopAll(1);
      }
    });
  }
}

// Detached children outlive this script unless told: whatever way it exits, none is left behind.
process.on('exit', () => {
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
});
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));
main().catch((err: unknown) => {
  process.stderr.write(`pnpm start: ${err instanceof Error ? err.message : String(err)}\n`);
  void stopAll(1);
});

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** A real Redis for a test: where it came from, how to reach it, and how to make it go away. */
export interface TestRedis {
  readonly url: string;
  readonly source: 'REDIS_URL' | 'testcontainers' | 'redis-server';
  /** A fresh prefix for queue names / keys, so tests sharing one server never share state. */
  uniquePrefix(label?: string): string;
  /** Stops Redis (spawned/containers only), keeping its data dir for {@link TestRedis.start}. */
  stop(): Promise<void>;
  /** Starts it again on the same port (spawned only). */
  start(): Promise<void>;
  /** Stops it for good and removes its files. */
  close(): Promise<void>;
}

export interface StartRedisOptions {
  /** Extra `redis-server` arguments, e.g. `['--appendonly', 'yes']`. */
  readonly args?: readonly string[];
  /**
   * Force a private, stoppable instance even when REDIS_URL is set (tests that stop Redis on
   * purpose must not stop a shared one).
   */
  readonly private?: boolean;
  /** Read instead of `process.env` for REDIS_URL, WXRELAY_TEST_NO_DOCKER and PATH (where redis-server is looked for). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The container route; tests of this module replace it. Default: testcontainers' `redis:7-alpine`. */
  readonly containers?: ContainerRoute;
}

/** Redis in a container: whether an engine answers at all, and starting one. */
export interface ContainerRoute {
  answers(): Promise<boolean>;
  start(args: readonly string[]): Promise<TestRedis>;
}

/** A free TCP port on loopback, as the OS hands it out. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

const HOW_TO_GET_REDIS =
  'Install redis-server (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis), ' +
  'or set REDIS_URL=redis://host:port, or start a Docker engine that can pull redis:7-alpine (testcontainers).';

function uniquePrefixFactory(): (label?: string) => string {
  return (label = 't') => `${label}-${randomBytes(6).toString('hex')}`;
}

async function waitForPing(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return;
    } catch (err) {
      lastError = err;
    } finally {
      client.disconnect();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Redis at ${url} did not answer within ${timeoutMs} ms: ${String(lastError)}`);
}

/** The environment redis-server runs in: PATH from `env` when it has one. */
function serverEnv(env: Readonly<Record<string, string | undefined>>): NodeJS.ProcessEnv {
  return { ...process.env, PATH: env.PATH ?? process.env.PATH };
}

function hasRedisServer(env: NodeJS.ProcessEnv): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore', env }).status === 0;
}

async function dockerAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const probe = getContainerRuntimeClient().then(() => true, () => false);
    const timeout = new Promise<boolean>((r) => setTimeout(() => r(false), 5_000).unref());
    return await Promise.race([probe, timeout]);
  } catch {
    return false;
  }
}

async function spawnRedisServer(extraArgs: readonly string[], env: NodeJS.ProcessEnv): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'wxrelay-redis-'));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    const args = [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction',
      '--protected-mode', 'no', ...extraArgs,
    ];
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    child = proc;
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<never>((_, reject) =>
      proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${stderr.trim()}`))),
    );
    exited.catch(() => undefined);
    await Promise.race([waitForPing(url, 10_000), exited]);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  };

  await start();
  return {
    url,
    source: 'redis-server',
    uniquePrefix: uniquePrefixFactory(),
    stop,
    start,
    close: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startContainer(extraArgs: readonly string[]): Promise<TestRedis> {
  const { GenericContainer, Wait } = await import('testcontainers');
  // A fixed host port, so that a test can stop and start Redis and find it where it was.
  const port = await freePort();
  const container = await new GenericContainer('redis:7-alpine')
    .withCommand(['redis-server', '--maxmemory-policy', 'noeviction', ...extraArgs])
    .withExposedPorts({ container: 6379, host: port })
    .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
    .start();
  const url = `redis://${container.getHost()}:${port}`;
  return {
    url,
    source: 'testcontainers',
    uniquePrefix: uniquePrefixFactory(),
    stop: async () => {
      await container.stop({ remove: false });
    },
    start: async () => {
      await container.restart();
      await waitForPing(url, 10_000);
    },
    close: async () => {
      await container.stop();
    },
  };
}

const TESTCONTAINERS: ContainerRoute = { answers: dockerAnswers, start: startContainer };

/**
 * A real Redis for integration tests, never a mock: `REDIS_URL` when set (unless `private`),
 * else a `redis-server` spawned on a free port in a temp dir when one is installed (fastest),
 * else a testcontainers `redis:7-alpine` when a Docker engine answers. When neither works (no
 * redis-server, and no engine or it cannot pull or start the image, e.g. offline) it fails with
 * what went wrong and what to install.
 */
export async function startRedis(opts: StartRedisOptions = {}): Promise<TestRedis> {
  const env = opts.env ?? process.env;
  const args = opts.args ?? [];
  const shared = env.REDIS_URL;
  if (shared !== undefined && shared !== '' && opts.private !== true) {
    await waitForPing(shared, 5_000);
    const refuse = (): Promise<void> => Promise.reject(new Error('a shared REDIS_URL cannot be stopped; use startRedis({ private: true })'));
    return { url: shared, source: 'REDIS_URL', uniquePrefix: uniquePrefixFactory(), stop: refuse, start: refuse, close: () => Promise.resolve() };
  }
  const spawnEnv = serverEnv(env);
  // A redis-server that is installed but fails to start (bad arguments) is an error worth seeing,
  // not a reason to go looking for Docker.
  if (hasRedisServer(spawnEnv)) return spawnRedisServer(args, spawnEnv);

  const containers = opts.containers ?? TESTCONTAINERS;
  let why: string;
  if (env.WXRELAY_TEST_NO_DOCKER === '1') why = 'Docker is turned off (WXRELAY_TEST_NO_DOCKER=1)';
  else if (!(await containers.answers())) why = 'no Docker engine answers';
  else {
    try {
      return await containers.start(args);
    } catch (err) {
      why = `Docker could not start redis:7-alpine (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`;
    }
  }
  throw new Error(`No Redis for tests: redis-server is not installed (not on PATH) and ${why}. ${HOW_TO_GET_REDIS}`);
}

/**
 * The processes every scenario stands on: the bench's own Redis (AOF every second, noeviction),
 * the built gateway and workers, and the fakes child.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { DEFAULT_QUEUE_PREFIX, INBOUND_QUEUE } from '@wxrelay/shared';
import { freePort, REPO_ROOT, startRedis, type TestRedis } from '@wxrelay/testkit';
import type { CollectedDeliveries, FakesMessage, FakesReady, FakesRequest } from './fakes.ts';
import { spawnNode, waitForPort, type Child } from './procs.ts';
import { gatewayEnv, IDENTITY, workerEnv } from './settings.ts';

export const BENCH_SRC = resolve(fileURLToPath(import.meta.url), '..');
export const GATEWAY_ENTRY = resolve(REPO_ROOT, 'services/gateway/dist/main.js');
export const WORKER_ENTRY = resolve(REPO_ROOT, 'services/worker/dist/main.js');

/** Redis as production runs it: AOF fsync every second, noeviction (data in a temp dir). */
export const REDIS_ARGS = ['--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction'] as const;

export interface BenchRedis {
  readonly url: string;
  /** redis-server's process id (for its CPU time). */
  readonly pid: number;
  readonly version: string;
  readonly client: Redis;
  /** Empties Redis and rewrites the AOF (waiting for it), so runs start alike and memory stays flat. */
  reset(): Promise<void>;
  /** Used memory, bytes. */
  usedMemory(): Promise<number>;
  close(): Promise<void>;
}

export async function startBenchRedis(): Promise<BenchRedis> {
  const redis: TestRedis = await startRedis({ private: true, env: { WXRELAY_TEST_NO_DOCKER: '1' }, args: REDIS_ARGS });
  const client = new Redis(redis.url, { maxRetriesPerRequest: null });
  client.on('error', () => undefined);
  const info = async (section: string, field: string): Promise<string | undefined> => {
    const text = await client.info(section);
    return new RegExp(`^${field}:(.*)$`, 'm').exec(text)?.[1]?.trim();
  };
  return {
    url: redis.url,
    pid: Number(await info('server', 'process_id')),
    version: (await info('server', 'redis_version')) ?? 'unknown',
    client,
    async reset() {
      await client.flushall();
      // A rewrite already running (Redis starts one by itself as the AOF grows) must end first.
      while ((await info('persistence', 'aof_rewrite_in_progress')) === '1') await delay(50);
      await client.bgrewriteaof().catch(() => undefined);
      await delay(20);
      while ((await info('persistence', 'aof_rewrite_in_progress')) === '1' || (await info('persistence', 'aof_rewrite_scheduled')) === '1') await delay(50);
    },
    async usedMemory() {
      return Number(await info('memory', 'used_memory'));
    },
    async close() {
      client.disconnect();
      await redis.close();
    },
  };
}

/** A replica of the bench's Redis on this machine (same settings), for scenario 8 (REDIS_ACK_REPLICAS). */
export interface BenchReplica {
  readonly pid: number;
  close(): Promise<void>;
}

export async function startBenchReplica(master: BenchRedis): Promise<BenchReplica> {
  const { hostname, port } = new URL(master.url);
  const redis = await startRedis({ private: true, env: { WXRELAY_TEST_NO_DOCKER: '1' }, args: [...REDIS_ARGS, '--replicaof', hostname, port] });
  const client = new Redis(redis.url, { maxRetriesPerRequest: null });
  client.on('error', () => undefined);
  try {
    const deadline = Date.now() + 20_000;
    while (!/master_link_status:up/.test(await client.info('replication'))) {
      if (Date.now() > deadline) throw new Error('the bench replica did not sync within 20 s');
      await delay(50);
    }
    const pid = Number(/^process_id:(\d+)/m.exec(await client.info('server'))?.[1]);
    return {
      pid,
      async close() {
        client.disconnect();
        await redis.close();
      },
    };
  } catch (err) {
    client.disconnect();
    await redis.close();
    throw err;
  }
}

/** A server under test listening on `port`. */
export interface Server {
  readonly name: string;
  readonly port: number;
  readonly child: Child;
}

export async function startServer(name: string, entry: string, env: Record<string, string>, nodeArgs: readonly string[] = []): Promise<Server> {
  const port = await freePort();
  const child = spawnNode({ name, entry, env: { ...env, PORT: String(port) }, nodeArgs, cwd: REPO_ROOT });
  await waitForPort(port, child);
  return { name, port, child };
}

export function startGateway(redisUrl: string, nodeArgs: readonly string[] = [], extraEnv: Readonly<Record<string, string>> = {}, name = 'wxrelay gateway'): Promise<Server> {
  return startServer(name, GATEWAY_ENTRY, { ...gatewayEnv(redisUrl, 0), ...extraEnv }, nodeArgs);
}

/** The peers and the ceiling, each its own single process, logging off. */
export function startPeer(kind: 'bare-fastify' | 'co-wechat' | 'wechat-express'): Promise<Server> {
  const names = { 'bare-fastify': 'bare fastify', 'co-wechat': 'co-wechat (koa)', 'wechat-express': 'wechat (express)' } as const;
  return startServer(names[kind], resolve(BENCH_SRC, 'servers', `${kind}.ts`), {
    WECHAT_TOKEN: IDENTITY.token,
    WECHAT_APP_ID: IDENTITY.appId,
    WECHAT_ENCODING_AES_KEY: IDENTITY.encodingAesKey,
    NODE_ENV: 'production',
  });
}

/** The fakes child over IPC. */
export interface Fakes extends FakesReady {
  /** The fakes child's process id (for its CPU time). */
  readonly pid: number;
  reset(): Promise<void>;
  /** The fake LLM answers after `ms` from now on. */
  setLlmDelay(ms: number): Promise<void>;
  /** Waits until `count` sends have been accepted (or `timeoutMs`), then returns them all. */
  collect(count: number, timeoutMs: number): Promise<CollectedDeliveries>;
  close(): Promise<void>;
}

export async function startFakes(llmDelayMs: number): Promise<Fakes> {
  const child = spawnNode({
    name: 'fakes',
    entry: resolve(BENCH_SRC, 'fakes.ts'),
    env: { WECHAT_APP_ID: IDENTITY.appId, WECHAT_APP_SECRET: IDENTITY.appSecret, LLM_DELAY_MS: String(llmDelayMs) },
    ipc: true,
    cwd: REPO_ROOT,
  });
  const waiting = new Map<number, (m: FakesMessage) => void>();
  let nextId = 1;
  const ready = await new Promise<FakesReady>((resolvePromise, reject) => {
    void child.exited.then(() => reject(new Error(`fakes exited:\n${child.output()}`)));
    child.proc.on('message', (m: FakesMessage) => {
      if ('ready' in m) return resolvePromise(m.ready);
      waiting.get(m.id)?.(m);
      waiting.delete(m.id);
    });
  });
  const ask = (request: FakesRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never): Promise<FakesMessage> =>
    new Promise((resolvePromise) => {
      const id = nextId++;
      waiting.set(id, resolvePromise);
      child.proc.send({ ...request, id });
    });
  return {
    ...ready,
    pid: child.pid,
    async reset() {
      await ask({ cmd: 'reset' });
    },
    async setLlmDelay(ms) {
      await ask({ cmd: 'delay', ms });
    },
    async collect(count, timeoutMs) {
      const m = await ask({ cmd: 'collect', count, timeoutMs });
      if (!('id' in m) || m.deliveries === undefined) throw new Error('fakes answered without deliveries');
      return m.deliveries;
    },
    close: () => child.stop(),
  };
}

/**
 * Worker processes, started together and ready (registered with BullMQ) when this resolves. `env`
 * (worker i's, from 0) is laid over {@link workerEnv}.
 */
export async function startWorkers(
  count: number,
  redisUrl: string,
  apiUrl: string,
  concurrency: number,
  llmUrl?: string,
  nodeArgs: readonly string[] = [],
  env: (index: number) => Readonly<Record<string, string>> = () => ({}),
): Promise<Child[]> {
  const workers = Array.from({ length: count }, (_, i) =>
    spawnNode({ name: `worker ${i + 1}`, entry: WORKER_ENTRY, env: { ...workerEnv(redisUrl, apiUrl, concurrency, llmUrl), ...env(i) }, nodeArgs, cwd: REPO_ROOT }),
  );
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined);
  // skipMetasUpdate: the bench must not write the queue's meta (BullMQ's Queue would reset the event stream's cap the producer set, INBOUND_EVENTS_MAX_LEN).
  const queue = new Queue(INBOUND_QUEUE, { connection, prefix: DEFAULT_QUEUE_PREFIX, skipMetasUpdate: true });
  try {
    const deadline = Date.now() + 20_000;
    while ((await queue.getWorkersCount()) < count) {
      const dead = workers.find((w) => w.proc.exitCode !== null);
      if (dead !== undefined) throw new Error(`${dead.name} exited:\n${dead.output()}`);
      if (Date.now() > deadline) throw new Error(`workers did not register within 20 s:\n${workers.map((w) => w.output()).join('\n')}`);
      await delay(50);
    }
  } finally {
    await queue.close();
    connection.disconnect();
  }
  return workers;
}

export async function stopAll(children: readonly Child[]): Promise<void> {
  await Promise.all(children.map((c) => c.stop()));
}

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './redis.js';

/**
 * Real Redis topologies for tests, from the installed `redis-server` (and `redis-cli` to form a
 * cluster): a Redis Cluster of a few masters, and a Sentinel setup (a master, a replica, three
 * sentinels). Every process runs on free loopback ports with its files in a temp dir, in a process
 * group of its own (killed as a group on close). No Docker route: these need the binaries.
 */

export interface RedisAddress {
  readonly host: string;
  readonly port: number;
}

/** One redis-server process (a data node or a sentinel). */
interface NodeProcess {
  readonly port: number;
  readonly proc: ChildProcess;
  stderr(): string;
}

const HOST = '127.0.0.1';

function requireBinaries(...names: string[]): void {
  for (const name of names) {
    if (spawnSync(name, ['--version'], { stdio: 'ignore' }).status !== 0) {
      throw new Error(`${name} is not installed (not on PATH): Redis Cluster and Sentinel tests run real processes (Debian/Ubuntu: apt-get install -y redis-server)`);
    }
  }
}

function spawnNode(port: number, args: readonly string[]): NodeProcess {
  // detached: a process group of its own, so close() can kill the group.
  const proc = spawn('redis-server', [...args], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.unref();
  return { port, proc, stderr: () => stderr };
}

function killGroup(node: NodeProcess): Promise<void> {
  if (node.proc.exitCode !== null || node.proc.signalCode !== null || node.proc.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    node.proc.once('exit', () => resolve());
    try {
      process.kill(-node.proc.pid!, 'SIGKILL');
    } catch {
      resolve();
    }
  });
}

/** A one-shot client for setup and checks: no retries, no offline queue. */
async function ask<T>(port: number, run: (c: Redis) => Promise<T>): Promise<T> {
  const c = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 1_000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return await run(c);
  } finally {
    c.disconnect();
  }
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, nodes: readonly NodeProcess[] = []): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    const dead = nodes.find((n) => n.proc.exitCode !== null);
    if (dead !== undefined) throw new Error(`redis-server on port ${dead.port} exited: ${dead.stderr().trim()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : ` (last error: ${last instanceof Error ? last.message : JSON.stringify(last)})`}`);
}

const pingable = (port: number) => () => ask(port, async (c) => ((await c.ping()) === 'PONG' ? true : undefined));

// repl-diskless-sync-delay 0: a replica that (re)connects gets its full sync at once, not after
// Redis's default 5 s wait for more replicas to share it.
const DATA_NODE_ARGS = ['--bind', HOST, '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction', '--protected-mode', 'no', '--repl-diskless-sync-delay', '0'];

export interface TestRedisCluster {
  /** The masters (and replicas, with `replicas`), as seed nodes. */
  readonly nodes: readonly RedisAddress[];
  /** The environment that points the services at it: `REDIS_CLUSTER_NODES`. */
  readonly env: Readonly<Record<string, string>>;
  /** SIGKILLs the master that serves `key`'s hash slot (without replicas its slots go down); its port. */
  killMasterOf(key: string): Promise<number>;
  /** The ports of the master serving `key`'s hash slot and of its replicas. */
  slotNodesOf(key: string): Promise<{ master: number; replicas: number[] }>;
  /** Kills every node and removes their files. */
  close(): Promise<void>;
}

/**
 * A Redis Cluster of `masters` masters (default 3) and `replicas` replicas of each (default 0),
 * slots spread evenly (`redis-cli --cluster create`), ready once every node reports
 * `cluster_state:ok` (and, with replicas, every replica's link to its master is up).
 */
export async function startRedisCluster(opts: { readonly masters?: number; readonly replicas?: number } = {}): Promise<TestRedisCluster> {
  requireBinaries('redis-server', 'redis-cli');
  const masters = opts.masters ?? 3;
  const replicas = opts.replicas ?? 0;
  const dir = await mkdtemp(join(tmpdir(), 'wxrelay-cluster-'));
  const nodes: NodeProcess[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(nodes.map(killGroup));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await freePort();
      // The cluster bus gets a free port of its own (Redis 7: cluster-port), not port + 10000.
      const busPort = await freePort();
      nodes.push(
        spawnNode(port, [
          '--port', String(port), '--cluster-port', String(busPort), '--dir', dir,
          '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000',
          ...DATA_NODE_ARGS,
        ]),
      );
    }
    for (const n of nodes) await until(`redis-server on ${n.port}`, 10_000, pingable(n.port), nodes);
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    for (const n of nodes) {
      await until(`cluster_state:ok on ${n.port}`, 20_000, () => ask(n.port, async (c) => (/cluster_state:ok/.test(String(await c.call('CLUSTER', 'INFO'))) ? true : undefined)), nodes);
    }
    if (replicas > 0) {
      // Every node's view of the slots lists each master's replicas, and every replica is in sync.
      for (const n of nodes) {
        await until(`${n.port} to list ${replicas} replica(s) per master`, 20_000, () => ask(n.port, async (c) => {
          const ranges = (await c.call('CLUSTER', 'SLOTS')) as unknown[][];
          return ranges.length > 0 && ranges.every((r) => r.length >= 3 + replicas) ? true : undefined;
        }), nodes);
        await until(`${n.port} a master or a replica in sync`, 20_000, () => ask(n.port, async (c) => {
          const info = await c.info('replication');
          return /role:master/.test(info) || /master_link_status:up/.test(info) ? true : undefined;
        }), nodes);
      }
    }
  } catch (err) {
    await close();
    throw err;
  }
  const addresses = nodes.map((n) => ({ host: HOST, port: n.port }));
  const alive = (): NodeProcess[] => nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
  const slotNodesOf = async (key: string): Promise<{ master: number; replicas: number[] }> => {
    const asked = alive()[0];
    if (asked === undefined) throw new Error('no cluster node is alive');
    const slot = Number(await ask(asked.port, (c) => c.call('CLUSTER', 'KEYSLOT', key)));
    const ranges = (await ask(asked.port, (c) => c.call('CLUSTER', 'SLOTS'))) as [number, number, ...[string, number, ...unknown[]][]][];
    const range = ranges.find(([from, to]) => slot >= from && slot <= to);
    if (range === undefined) throw new Error(`no node serves slot ${slot}`);
    const [, , master, ...replicas] = range;
    if (master === undefined) throw new Error(`no master serves slot ${slot}`);
    return { master: Number(master[1]), replicas: replicas.map((r) => Number(r[1])) };
  };
  return {
    nodes: addresses,
    env: { REDIS_CLUSTER_NODES: addresses.map((a) => `${a.host}:${a.port}`).join(',') },
    async killMasterOf(key) {
      const { master: owner } = await slotNodesOf(key);
      const node = nodes.find((n) => n.port === owner);
      if (node === undefined) throw new Error(`the master of ${key}'s slot (port ${owner}) is not one of ours`);
      await killGroup(node);
      return node.port;
    },
    slotNodesOf,
    close,
  };
}

export interface TestRedisSentinel {
  /** The master name the sentinels monitor. */
  readonly name: string;
  readonly sentinels: readonly RedisAddress[];
  /** The environment that points the services at it: `REDIS_SENTINELS`, `REDIS_SENTINEL_NAME`. */
  readonly env: Readonly<Record<string, string>>;
  /** The port of the node the sentinels name master now. */
  masterPort(): Promise<number>;
  /** SIGKILLs the current master (its whole process group); its port. */
  killMaster(): Promise<number>;
  /** Waits until the sentinels name a master other than `oldPort`, which then answers as master; its port. */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<number>;
  /** The ports of the data nodes alive that are not the current master. */
  replicaPorts(): Promise<number[]>;
  /**
   * Starts a data node replicating the current master (on `port`, e.g. a killed node's, as its
   * supervisor would bring it back; default a free port), ready once its link to the master is up
   * and the master counts it; its port.
   */
  startReplica(port?: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * Sentinel: a master, one replica of it, and three sentinels (quorum 2) monitoring it as `name`
 * (default `wxrelay`), quick to act (down after 1 s, failover timeout 3 s). Ready once every
 * sentinel knows the replica and the two other sentinels, so that a failover can happen at once.
 */
export async function startRedisSentinel(opts: { readonly name?: string } = {}): Promise<TestRedisSentinel> {
  requireBinaries('redis-server');
  const name = opts.name ?? 'wxrelay';
  const dir = await mkdtemp(join(tmpdir(), 'wxrelay-sentinel-'));
  const data = new Map<number, NodeProcess>();
  const sentinels: NodeProcess[] = [];
  const all = (): NodeProcess[] => [...data.values(), ...sentinels];
  const close = async (): Promise<void> => {
    await Promise.all(all().map(killGroup));
    await rm(dir, { recursive: true, force: true });
  };
  const masterPort = async (): Promise<number> => {
    for (const s of sentinels) {
      try {
        const addr = await ask(s.port, (c) => c.call('SENTINEL', 'get-master-addr-by-name', name));
        if (Array.isArray(addr) && addr.length === 2) return Number(addr[1]);
      } catch {
        // try the next sentinel
      }
    }
    throw new Error('no sentinel answers for the master');
  };
  try {
    const master = await freePort();
    const replica = await freePort();
    data.set(master, spawnNode(master, ['--port', String(master), '--dir', dir, '--dbfilename', `dump-${master}.rdb`, ...DATA_NODE_ARGS]));
    data.set(replica, spawnNode(replica, ['--port', String(replica), '--dir', dir, '--dbfilename', `dump-${replica}.rdb`, '--replicaof', HOST, String(master), ...DATA_NODE_ARGS]));
    for (const n of data.values()) await until(`redis-server on ${n.port}`, 10_000, pingable(n.port), all());
    await until('the replica in sync', 10_000, () => ask(replica, async (c) => (/master_link_status:up/.test(await c.info('replication')) ? true : undefined)), all());
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      // Sentinel rewrites its config file: one writable file each.
      const conf = join(dir, `sentinel-${port}.conf`);
      await writeFile(
        conf,
        [
          `port ${port}`,
          `bind ${HOST}`,
          'protected-mode no',
          `dir ${dir}`,
          `sentinel monitor ${name} ${HOST} ${master} 2`,
          `sentinel down-after-milliseconds ${name} 1000`,
          `sentinel failover-timeout ${name} 3000`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      sentinels.push(spawnNode(port, [conf, '--sentinel']));
    }
    for (const s of sentinels) {
      await until(
        `sentinel ${s.port} to know the replica and the other sentinels`,
        20_000,
        () =>
          ask(s.port, async (c) => {
            const flat = (await c.call('SENTINEL', 'master', name)) as string[];
            const info = new Map<string, string>();
            for (let i = 0; i + 1 < flat.length; i += 2) info.set(String(flat[i]), String(flat[i + 1]));
            return Number(info.get('num-slaves')) >= 1 && Number(info.get('num-other-sentinels')) >= 2 ? true : undefined;
          }),
        all(),
      );
    }
  } catch (err) {
    await close();
    throw err;
  }
  const addresses = sentinels.map((s) => ({ host: HOST, port: s.port }));
  return {
    name,
    sentinels: addresses,
    env: { REDIS_SENTINELS: addresses.map((a) => `${a.host}:${a.port}`).join(','), REDIS_SENTINEL_NAME: name },
    masterPort,
    async killMaster() {
      const port = await masterPort();
      const node = data.get(port);
      if (node === undefined) throw new Error(`the master on ${port} is not one of ours`);
      await killGroup(node);
      return port;
    },
    async replicaPorts() {
      const master = await masterPort();
      return [...data.values()].filter((n) => n.port !== master && n.proc.exitCode === null && n.proc.signalCode === null).map((n) => n.port);
    },
    async startReplica(port) {
      const master = await masterPort();
      const at = port ?? (await freePort());
      const old = data.get(at);
      if (old !== undefined && old.proc.exitCode === null && old.proc.signalCode === null) throw new Error(`a data node still runs on ${at}`);
      data.set(at, spawnNode(at, ['--port', String(at), '--dir', dir, '--dbfilename', `dump-${at}.rdb`, '--replicaof', HOST, String(master), ...DATA_NODE_ARGS]));
      await until(`the new replica on ${at} in sync with ${master}`, 20_000, () => ask(at, async (c) => (/master_link_status:up/.test(await c.info('replication')) ? true : undefined)), all());
      // WAIT counts the replicas the master knows: wait until it lists this one online.
      await until(`the master ${master} to count the replica on ${at}`, 10_000, () => ask(master, async (c) => (new RegExp(`ip=[^,]+,port=${at},state=online`).test(await c.info('replication')) ? true : undefined)), all());
      return at;
    },
    async waitForFailover(oldPort, timeoutMs = 30_000) {
      return until(`a failover away from ${oldPort}`, timeoutMs, async () => {
        const port = await masterPort();
        if (port === oldPort) return undefined;
        return ask(port, async (c) => (/role:master/.test(await c.info('replication')) ? port : undefined));
      });
    },
    close,
  };
}

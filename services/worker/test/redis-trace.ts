import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { readdirSync } from 'node:fs';
import { Redis } from 'ioredis';
import type { RedisClient } from '@wxrelay/shared/redis';

/**
 * What one Redis connection sends, seen twice:
 * - by the server (`MONITOR`, filtered to the connection's own address): every command it ran
 *   for that client, in order (commands run inside a Lua script are not listed: they are part of
 *   the EVALSHA);
 * - by the client (`sendCommand` wrapped on the connection): which of those were sent together,
 *   i.e. with no reply received in between — one round trip.
 *
 * A script's EVALSHA is named by its digest: BullMQ's (`moveToFinished:6.7.0`, …, from the
 * installed bullmq) or the project's (the names the connection defined them under).
 */

export interface SeenCommand {
  /** The command, or the script's name for EVAL/EVALSHA. */
  readonly name: string;
  /** BullMQ's own command (one of its scripts), or the blocking fetch. */
  readonly bullmq: boolean;
}

export interface RoundTrip {
  readonly commands: readonly SeenCommand[];
  /** True when BullMQ sends a command of this round trip anyway (the rest rides along). */
  readonly bullmq: boolean;
}

const requireFromBullmq = createRequire(createRequire(import.meta.url).resolve('bullmq'));

/** sha1 of every BullMQ script of the installed bullmq → its name (`moveToFinished`, …). */
function bullmqDigests(): Map<string, string> {
  const scriptsDir = join(dirname(requireFromBullmq.resolve('bullmq')), 'scripts');
  const out = new Map<string, string>();
  for (const file of readdirSync(scriptsDir)) {
    if (!/^[A-Za-z]+-\d+\.js$/.test(file)) continue;
    const mod = requireFromBullmq(join(scriptsDir, file)) as Record<string, { content?: unknown; name?: unknown } | undefined>;
    for (const v of Object.values(mod)) {
      if (typeof v?.content === 'string' && typeof v.name === 'string') out.set(createHash('sha1').update(v.content).digest('hex'), v.name);
    }
  }
  return out;
}

const BULLMQ = bullmqDigests();
/** BullMQ commands that are not scripts: its blocking fetch and what it reads directly. */
const BULLMQ_PLAIN = new Set(['bzpopmin']);

interface DefinedScript {
  readonly sha: string;
  readonly lua: string;
}

/** The digest → name of every script defined on `redis` (ioredis `defineCommand`). */
function definedScripts(redis: RedisClient): Map<string, string> {
  const set = (redis as unknown as { scriptsSet?: Record<string, DefinedScript> }).scriptsSet ?? {};
  const out = new Map<string, string>();
  for (const [name, script] of Object.entries(set)) out.set(script.sha, name.replace(/:\d+\.\d+\.\d+$/, ''));
  return out;
}

/**
 * MONITOR quotes arguments as Redis's `sdscatrepr` does (ioredis undoes only `\"`): the rest is
 * undone here, so an EVAL's script hashes to its digest.
 */
function unrepr(text: string): string {
  return text.replace(/\\(x[0-9a-f]{2}|.)/g, (_, e: string) => {
    switch (e.charAt(0)) {
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'a':
        return '\x07';
      case 'b':
        return '\b';
      case 'x':
        return String.fromCharCode(parseInt(e.slice(1), 16));
      default:
        return e;
    }
  });
}

function nameOf(redis: RedisClient, command: string, args: readonly string[], fromMonitor = false): SeenCommand {
  const lower = command.toLowerCase();
  if (lower === 'evalsha' || lower === 'eval') {
    // EVAL: the first use of a script on a connection (ioredis sends EVALSHA from then on).
    const script = fromMonitor ? Buffer.from(unrepr(String(args[0])), 'latin1') : String(args[0]);
    const sha = lower === 'evalsha' ? String(args[0]) : createHash('sha1').update(script).digest('hex');
    const bull = BULLMQ.get(sha);
    if (bull !== undefined) return { name: `${bull} (BullMQ)`, bullmq: true };
    return { name: definedScripts(redis).get(sha) ?? `script ${sha.slice(0, 8)}`, bullmq: false };
  }
  return { name: lower, bullmq: BULLMQ_PLAIN.has(lower) };
}

interface Sent {
  readonly flight: number;
  readonly seen: SeenCommand;
}

export interface RedisTrace {
  /** Starts recording (both views). */
  start(): Promise<void>;
  /** Stops recording; what the server ran for the connection, in order. */
  stop(): Promise<{ server: SeenCommand[]; roundTrips: RoundTrip[] }>;
  close(): Promise<void>;
}

interface CommandLike {
  readonly name: string;
  readonly args: readonly unknown[];
  readonly promise: Promise<unknown>;
}

/**
 * Traces `redis` (a worker's connection), MONITORing through a new connection to `url`. Call
 * `start` only once the connection is up (its local address names it in MONITOR).
 */
export function traceConnection(redis: RedisClient, url: string): RedisTrace {
  const client = redis as unknown as { sendCommand: (c: CommandLike, s?: unknown) => unknown; stream?: { localPort?: number; localAddress?: string } };
  // Wrapped on the instance; deleting the wrapper brings back the prototype's.
  const original = client.sendCommand.bind(client);
  let recording = false;
  let sent: Sent[] = [];
  let flight = 0;
  let replied = true;
  client.sendCommand = (command: CommandLike, stream?: unknown) => {
    if (recording) {
      if (replied) {
        flight += 1;
        replied = false;
      }
      sent.push({ flight, seen: nameOf(redis, command.name, command.args.map((a) => (Buffer.isBuffer(a) ? a.toString() : String(a)))) });
      const mark = (): void => {
        replied = true;
      };
      command.promise.then(mark, mark);
    }
    return original(command, stream);
  };

  const monitorClient = new Redis(url, { lazyConnect: true });
  monitorClient.on('error', () => undefined);
  let monitor: Redis | undefined;
  let server: SeenCommand[] = [];
  let source = '';

  return {
    async start() {
      const local = client.stream;
      if (local?.localPort === undefined) throw new Error('the traced connection is not connected');
      source = `${local.localAddress?.replace(/^::ffff:/, '') ?? '127.0.0.1'}:${local.localPort}`;
      server = [];
      sent = [];
      flight = 0;
      replied = true;
      monitor = await monitorClient.monitor();
      monitor.on('monitor', (_time: string, args: string[], from: string) => {
        // Lua-internal commands come from "lua": part of their script's EVALSHA.
        if (from !== source || args.length === 0) return;
        server.push(nameOf(redis, args[0]!, args.slice(1), true));
      });
      // MONITOR is asynchronous to the traced connection: a PING through it marks the start.
      await redis.ping();
      recording = true;
    },
    async stop() {
      recording = false;
      await redis.ping();
      // Let the monitor stream catch up with the PING just sent (the second one it sees).
      const pings = () => server.filter((c) => c.name === 'ping').length;
      for (let waited = 0; pings() < 2; waited += 10) {
        if (waited > 10_000) throw new Error('MONITOR did not show the closing PING within 10 s');
        await new Promise((r) => setTimeout(r, 10));
      }
      const ranAt = server.findIndex((c) => c.name === 'ping');
      const lastPing = server.map((c) => c.name).lastIndexOf('ping');
      const ran = server.slice(ranAt + 1, lastPing);
      const groups = new Map<number, SeenCommand[]>();
      for (const s of sent) groups.set(s.flight, [...(groups.get(s.flight) ?? []), s.seen]);
      const roundTrips = [...groups.values()].map((commands) => ({ commands, bullmq: commands.some((c) => c.bullmq) }));
      monitor?.disconnect();
      monitor = undefined;
      return { server: ran, roundTrips };
    },
    close() {
      delete (client as { sendCommand?: unknown }).sendCommand;
      monitor?.disconnect();
      monitorClient.disconnect();
      return Promise.resolve();
    },
  };
}

/** One line per round trip: `[BullMQ] moveToFinished (BullMQ) + wxTurns`. */
export function describeRoundTrips(trips: readonly RoundTrip[]): string[] {
  return trips.map((t) => `${t.bullmq ? 'BullMQ ' : 'ours   '} ${t.commands.map((c) => c.name).join(' + ')}`);
}

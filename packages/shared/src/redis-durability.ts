import type { Logger } from 'pino';

/**
 * Whether the Redis the queue lives in keeps what it holds. The gateway answers `success` once
 * Redis holds a message, so a Redis that forgets (no persistence: a restart empties it) or drops
 * keys when full (any `maxmemory-policy` but `noeviction`) loses messages WeChat will never send
 * again. Both services check at startup and warn, one line per problem, with the fix; the check
 * never stops a service from starting.
 */

/** The little of an ioredis client the check uses (shared does not depend on ioredis). */
export interface RedisCommands {
  call(command: string, ...args: string[]): Promise<unknown>;
}

/** A connection that says when it is ready (ioredis: `status`, the `ready` event). */
export interface ReadyRedis extends RedisCommands {
  readonly status: string;
  once(event: 'ready', listener: () => void): unknown;
}

export type RedisDurabilityProblemCode = 'persistence-off' | 'persistence-unknown' | 'eviction' | 'unchecked';

export interface RedisDurabilityProblem {
  readonly code: RedisDurabilityProblemCode;
  /** One line for the operator: what is wrong, what it costs, and the fix. */
  readonly message: string;
}

export interface RedisDurability {
  /** Where the settings came from: CONFIG GET, INFO (CONFIG disabled, as on managed Redis), or nowhere. */
  readonly source: 'config' | 'info' | 'none';
  /** AOF on (`appendonly yes`). */
  readonly aof: boolean | undefined;
  /** RDB save points set (`save` not empty); INFO cannot tell. */
  readonly rdb: boolean | undefined;
  readonly appendfsync: string | undefined;
  readonly maxmemoryPolicy: string | undefined;
  readonly problems: readonly RedisDurabilityProblem[];
}

export interface RedisDurabilityOptions {
  /** Per command; a command that does not answer counts as failed. Default 5 s. */
  readonly timeoutMs?: number;
}

function within<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function reasonOf(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 200);
}

async function configGet(redis: RedisCommands, name: string, timeoutMs: number): Promise<string> {
  const reply = await within(redis.call('CONFIG', 'GET', name), timeoutMs);
  if (!Array.isArray(reply) || reply.length < 2 || typeof reply[1] !== 'string') throw new Error(`CONFIG GET ${name}: unexpected reply`);
  return reply[1];
}

async function infoFields(redis: RedisCommands, section: string, timeoutMs: number): Promise<Map<string, string>> {
  const text = await within(redis.call('INFO', section), timeoutMs);
  if (typeof text !== 'string') throw new Error(`INFO ${section}: unexpected reply`);
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) fields.set(line.slice(0, at), line.slice(at + 1).trim());
  }
  return fields;
}

const FIX_AOF = 'turn AOF on: appendonly yes (redis-server --appendonly yes, or CONFIG SET appendonly yes then CONFIG REWRITE; on managed Redis, in its persistence settings)';
const FIX_EVICTION = 'set maxmemory-policy noeviction (redis-server --maxmemory-policy noeviction, or CONFIG SET maxmemory-policy noeviction then CONFIG REWRITE; on managed Redis, in its parameter group)';

/** The problems in a set of settings (undefined: not known). */
export function durabilityProblems(s: Pick<RedisDurability, 'aof' | 'rdb' | 'maxmemoryPolicy'>): RedisDurabilityProblem[] {
  const problems: RedisDurabilityProblem[] = [];
  if (s.aof === false && s.rdb === false) {
    problems.push({
      code: 'persistence-off',
      message: `Redis persistence is off (appendonly no, no RDB save points): a Redis restart loses every queued message the gateway has already acked; ${FIX_AOF}`,
    });
  } else if (s.aof === false && s.rdb === undefined) {
    problems.push({
      code: 'persistence-unknown',
      message: `Redis AOF is off and its RDB save points cannot be read (CONFIG is not allowed): unless RDB snapshots are on, a Redis restart loses queued messages; ${FIX_AOF}`,
    });
  }
  if (s.maxmemoryPolicy !== undefined && s.maxmemoryPolicy !== 'noeviction') {
    problems.push({
      code: 'eviction',
      message: `Redis maxmemory-policy is ${s.maxmemoryPolicy}, not noeviction: when Redis reaches maxmemory it may evict queued messages (and the queue's own keys); ${FIX_EVICTION}`,
    });
  }
  return problems;
}

/**
 * Reads Redis's persistence and eviction settings: CONFIG GET when allowed, else INFO
 * (persistence, memory). Never throws: when nothing can be read, the one problem says so.
 */
export async function checkRedisDurability(redis: RedisCommands, opts: RedisDurabilityOptions = {}): Promise<RedisDurability> {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  let configError: string;
  try {
    const [appendonly, save, appendfsync, policy] = await Promise.all(
      ['appendonly', 'save', 'appendfsync', 'maxmemory-policy'].map((name) => configGet(redis, name, timeoutMs)),
    );
    const settings = { aof: appendonly === 'yes', rdb: save!.trim() !== '', maxmemoryPolicy: policy };
    return { source: 'config', ...settings, appendfsync, problems: durabilityProblems(settings) };
  } catch (err) {
    configError = reasonOf(err);
  }
  try {
    const [persistence, memory] = await Promise.all([infoFields(redis, 'persistence', timeoutMs), infoFields(redis, 'memory', timeoutMs)]);
    const aofEnabled = persistence.get('aof_enabled');
    const settings = {
      aof: aofEnabled === undefined ? undefined : aofEnabled === '1',
      // INFO shows no save points; AOF on is enough either way.
      rdb: undefined,
      maxmemoryPolicy: memory.get('maxmemory_policy'),
    };
    return { source: 'info', ...settings, appendfsync: undefined, problems: durabilityProblems(settings) };
  } catch (err) {
    return {
      source: 'none',
      aof: undefined,
      rdb: undefined,
      appendfsync: undefined,
      maxmemoryPolicy: undefined,
      problems: [
        {
          code: 'unchecked',
          message: `could not check Redis persistence and eviction settings (CONFIG GET: ${configError}; INFO: ${reasonOf(err)}): make sure Redis runs with appendonly yes and maxmemory-policy noeviction, or a restart or a full Redis can lose queued messages`,
        },
      ],
    };
  }
}

/** One warn line per problem (none when all is well). */
export function logRedisDurability(report: RedisDurability, log: Logger): void {
  const settings = { source: report.source, aof: report.aof, rdb: report.rdb, appendfsync: report.appendfsync, maxmemoryPolicy: report.maxmemoryPolicy };
  for (const p of report.problems) log.warn({ code: p.code, redis: settings }, p.message);
  if (report.problems.length === 0) log.debug({ redis: settings }, 'redis keeps what it holds (persistence on, noeviction)');
}

/**
 * Checks once the connection is ready (now, or when Redis comes up: a Redis that is down at
 * startup is not an error here) and logs the result. Never rejects; resolves with the report.
 */
export function checkRedisDurabilityWhenReady(redis: ReadyRedis, log: Logger, opts: RedisDurabilityOptions = {}): Promise<RedisDurability> {
  const ready = redis.status === 'ready' ? Promise.resolve() : new Promise<void>((resolve) => redis.once('ready', resolve));
  return ready
    .then(() => checkRedisDurability(redis, opts))
    .then((report) => {
      logRedisDurability(report, log);
      return report;
    });
}

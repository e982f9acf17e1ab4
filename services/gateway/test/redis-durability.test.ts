import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '@wxrelay/testkit';
import { checkRedisDurability, checkRedisDurabilityWhenReady, createLogger, durabilityProblems, type RedisCommands } from '@wxrelay/shared';

/*
 * The startup check of packages/shared/src/redis-durability.ts (both services run it), against
 * real Redis servers with the settings under test (private ones: a shared REDIS_URL has its own).
 */

function capture(): { log: ReturnType<typeof createLogger>; records: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { log: createLogger({ name: 'durability-test', level: 'debug', destination }), records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const warnings = (records: Record<string, unknown>[]): Record<string, unknown>[] => records.filter((r) => r.level === 40 || r.level === 'warn');

/** A client whose CONFIG is refused, as on managed Redis where CONFIG is renamed away. */
function withoutConfig(redis: Redis): RedisCommands {
  return {
    call: (command, ...args) => (command.toUpperCase() === 'CONFIG' ? Promise.reject(new Error("ERR unknown command 'CONFIG'")) : redis.call(command, ...args)),
  };
}

describe('checkRedisDurability against real Redis', () => {
  let forgetful: TestRedis;
  let durable: TestRedis;
  let a: Redis;
  let b: Redis;

  beforeAll(async () => {
    forgetful = await startRedis({ private: true, args: ['--appendonly', 'no', '--save', '', '--maxmemory-policy', 'allkeys-lru'] });
    durable = await startRedis({ private: true, args: ['--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction'] });
    a = new Redis(forgetful.url);
    b = new Redis(durable.url);
    // One test stops the durable Redis for a while.
    for (const c of [a, b]) c.on('error', () => undefined);
  }, 60_000);
  afterAll(async () => {
    a?.disconnect();
    b?.disconnect();
    await forgetful?.close();
    await durable?.close();
  });

  it('no AOF, no RDB, allkeys-lru: both problems, as data and as one warn line each', async () => {
    const { log, records } = capture();
    const report = await checkRedisDurabilityWhenReady(a, log);
    expect(report).toMatchObject({ source: 'config', aof: false, rdb: false, maxmemoryPolicy: 'allkeys-lru' });
    expect(report.problems.map((p) => p.code)).toEqual(['persistence-off', 'eviction']);
    const warned = warnings(records());
    expect(warned).toHaveLength(2);
    expect(warned.map((w) => w.code)).toEqual(['persistence-off', 'eviction']);
    expect(String(warned[0]!.msg)).toContain('appendonly yes');
    expect(String(warned[1]!.msg)).toContain('allkeys-lru');
    expect(String(warned[1]!.msg)).toContain('maxmemory-policy noeviction');
    for (const w of warned) expect(String(w.msg)).not.toContain('\n');
  });

  it('AOF on and noeviction: nothing to report, no warning', async () => {
    const { log, records } = capture();
    const report = await checkRedisDurabilityWhenReady(b, log);
    expect(report).toMatchObject({ source: 'config', aof: true, appendfsync: 'everysec', maxmemoryPolicy: 'noeviction', problems: [] });
    expect(warnings(records())).toEqual([]);
  });

  it('CONFIG refused (managed Redis): falls back to INFO, which still shows AOF off and the policy', async () => {
    const report = await checkRedisDurability(withoutConfig(a));
    expect(report).toMatchObject({ source: 'info', aof: false, rdb: undefined, maxmemoryPolicy: 'allkeys-lru' });
    expect(report.problems.map((p) => p.code)).toEqual(['persistence-unknown', 'eviction']);
    const fine = await checkRedisDurability(withoutConfig(b));
    expect(fine).toMatchObject({ source: 'info', aof: true, maxmemoryPolicy: 'noeviction', problems: [] });
  });

  it('nothing readable: one problem saying it could not check, and no throw', async () => {
    const refusing: RedisCommands = { call: () => Promise.reject(new Error('NOPERM this user has no permissions')) };
    const { log, records } = capture();
    const report = await checkRedisDurabilityWhenReady({ ...refusing, status: 'ready', once: () => undefined }, log);
    expect(report.source).toBe('none');
    expect(report.problems.map((p) => p.code)).toEqual(['unchecked']);
    expect(warnings(records())).toHaveLength(1);
    expect(String(warnings(records())[0]!.msg)).toMatch(/^could not check Redis persistence/);
  });

  it('a command that never answers counts as failed after the timeout', async () => {
    const silent: RedisCommands = { call: () => new Promise(() => undefined) };
    const report = await checkRedisDurability(silent, { timeoutMs: 50 });
    expect(report.problems.map((p) => p.code)).toEqual(['unchecked']);
  });

  it('Redis down at startup: waits for it instead of failing, then checks', async () => {
    await durable.stop();
    const late = new Redis(durable.url, { retryStrategy: () => 50, maxRetriesPerRequest: null });
    late.on('error', () => undefined);
    try {
      const { log } = capture();
      const pending = checkRedisDurabilityWhenReady(late, log);
      let settled = false;
      void pending.then(() => (settled = true));
      await new Promise((r) => setTimeout(r, 200));
      expect(settled).toBe(false);
      await durable.start();
      expect((await pending).problems).toEqual([]);
    } finally {
      late.disconnect();
    }
  }, 30_000);
});

describe('durabilityProblems', () => {
  it('RDB alone is persistence; unknown settings are not reported as off', () => {
    expect(durabilityProblems({ aof: false, rdb: true, maxmemoryPolicy: 'noeviction' })).toEqual([]);
    expect(durabilityProblems({ aof: undefined, rdb: undefined, maxmemoryPolicy: undefined })).toEqual([]);
    expect(durabilityProblems({ aof: true, rdb: false, maxmemoryPolicy: 'volatile-lru' }).map((p) => p.code)).toEqual(['eviction']);
  });
});

import type { RedisClient } from '@wxrelay/shared/redis';

/** A Lua script bound to a connection: `keys` then `args`, as `EVALSHA` takes them. */
export type RedisScript = (keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown>;

/**
 * Defines `lua` on `redis` under `name` (ioredis `defineCommand`): calls send `EVALSHA` and the
 * 40-byte digest, falling back to `EVAL` once per connection when Redis does not know it yet.
 * Define each script once per connection, at wiring time: every ioredis pipeline copies every
 * command defined on its connection.
 */
export function defineScript(redis: RedisClient, name: string, numberOfKeys: number, lua: string): RedisScript {
  redis.defineCommand(name, { numberOfKeys, lua });
  const command = (redis as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>)[name];
  if (command === undefined) throw new Error(`ioredis did not define the script command ${name}`);
  return (keys, args) => command.call(redis, ...keys, ...args);
}

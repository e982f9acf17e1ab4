import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisSentinel, type TestRedisSentinel } from '@wxrelay/testkit';
import { createRedisConnection } from '../redis-connection.js';
import { createReplicaWaiter, keySlot } from './replicas.js';

describe('keySlot', () => {
  it("is Redis Cluster's CLUSTER KEYSLOT: CRC16 of the key, or of its hash tag, mod 16384", () => {
    // Values from the Redis Cluster specification and CLUSTER KEYSLOT.
    expect(keySlot('123456789')).toBe(0x31c3);
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('bar')).toBe(5061);
    expect(keySlot('hello')).toBe(866);
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'));
    expect(keySlot('{wx}:wx-inbound:meta')).toBe(keySlot('wx'));
    // An empty tag does not count: the whole key is hashed.
    expect(keySlot('{}foo')).not.toBe(keySlot(''));
  });
});

describe('the replica waiter (real master and replica)', () => {
  let sentinel: TestRedisSentinel;
  let conn: Redis;
  let replica: number;

  beforeAll(async () => {
    sentinel = await startRedisSentinel();
    const master = await sentinel.masterPort();
    const [port] = await sentinel.replicaPorts();
    if (port === undefined) throw new Error('no replica');
    replica = port;
    // The gateway's kind of connection: no offline queue, resends what was in flight on reconnect.
    conn = createRedisConnection({ kind: 'single', url: `redis://127.0.0.1:${master}`, tls: false }, 'gateway') as Redis;
    if (conn.status !== 'ready') await new Promise((resolve) => conn.once('ready', resolve));
  });
  afterAll(async () => {
    conn?.disconnect();
    await sentinel?.close();
  });

  const pauseReplica = async (ms: number): Promise<void> => {
    const c = new Redis({ host: '127.0.0.1', port: replica, maxRetriesPerRequest: 0 });
    try {
      await c.call('CLIENT', 'PAUSE', String(ms), 'ALL');
    } finally {
      c.disconnect();
    }
  };

  it('answers how many replicas confirmed the writes made on the connection before WAIT', async () => {
    const waiter = createReplicaWaiter(conn, 'k');
    const link = waiter.link()!;
    expect(link.node).toBe(conn);
    await conn.set('k', '1');
    expect(await waiter.confirm(link, 1, 2_000)).toBe(1);
  });

  it('a replica that lags confirms nothing within the time given', async () => {
    const waiter = createReplicaWaiter(conn, 'k');
    await pauseReplica(700);
    const link = waiter.link()!;
    await conn.set('k', '2');
    expect(await waiter.confirm(link, 1, 200)).toBe(0);
    await sleep(700);
  });

  it('refuses to confirm when the connection was replaced between the write and WAIT', async () => {
    const waiter = createReplicaWaiter(conn, 'k');
    const link = waiter.link()!;
    await conn.set('k', '3');
    conn.disconnect(true);
    await new Promise((resolve) => conn.once('ready', resolve));
    await expect(waiter.confirm(link, 1, 1_000)).rejects.toThrow(/replaced before WAIT/);
  });

  it('refuses the answer of a WAIT that ioredis resent on a new connection (it covers no write)', async () => {
    const waiter = createReplicaWaiter(conn, 'k');
    await pauseReplica(1_500);
    const link = waiter.link()!;
    await conn.set('k', '4');
    // The replica cannot confirm: WAIT blocks. The connection drops; ioredis resends the WAIT on the
    // new one, where it has no write behind it and answers at once with every replica online.
    const confirming = waiter.confirm(link, 1, 1_200);
    await sleep(100);
    conn.disconnect(true);
    await expect(confirming).rejects.toThrow(/replaced before WAIT answered/);
    // What the resent WAIT would have said: "1", for a write the replica has not applied.
    expect(await conn.call('WAIT', '1', '100')).toBe(1);
    await sleep(1_500);
  });
});

import type { Cluster, Redis } from 'ioredis';
import { hashTagOf } from '../config.js';
import { isCluster, type RedisClient } from '../redis-connection.js';

/**
 * Acks that survive a failover (REDIS_ACK_REPLICAS): after a batch is in the master, the producer
 * sends `WAIT <replicas> <ms>` on **the connection that wrote it** and acks only when enough replicas
 * confirmed. Redis answers WAIT with the number of replicas that acknowledged every write that
 * connection made before it (its own offset, not the master's), so WAIT on another connection proves
 * nothing about the batch — hence the two rules here:
 *
 * - Redis Cluster: ioredis sends a keyless command (WAIT) to a random node. It goes instead to the
 *   master that serves the queue's hash slot, through the `Redis` instance the Cluster itself uses
 *   for that node (`cluster.nodes('master')`, matched by the node key `cluster.slots[slot]` names):
 *   one connection per node, the one the batch went out on.
 * - A reconnect between the write and WAIT's answer voids it. ioredis resends commands in flight when
 *   a connection drops (`autoResendUnfulfilledCommands`): a WAIT resent on a fresh connection (after
 *   a blip, or to the new master after a failover) has no writes behind it and answers at once with
 *   every replica. The producer notes the connection's socket when it writes; an answer that arrives
 *   on another socket (or a slot that moved to another node meanwhile) counts as not confirmed.
 */

/** A connection as it was when a batch was written to it. */
export interface WriteLink {
  readonly node: Redis;
  /** The socket at write time: ioredis makes a new one on every (re)connect. */
  readonly stream: unknown;
}

export interface ReplicaWaiter {
  /** The connection the next write to the queue's keys goes out on (undefined: none known). */
  link(): WriteLink | undefined;
  /**
   * `WAIT replicas timeoutMs` on `link`'s connection: how many replicas confirmed every earlier write
   * of it. Rejects when the connection was replaced (or the slot moved) since `link` was taken.
   */
  confirm(link: WriteLink, replicas: number, timeoutMs: number): Promise<number>;
}

/** CRC16-CCITT (XModem), the hash of Redis Cluster's key slots. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The Redis Cluster hash slot of `key` (its hash tag's when it has one), as `CLUSTER KEYSLOT` computes it. */
export function keySlot(key: string): number {
  return crc16(Buffer.from(hashTagOf(key) ?? key)) % 16384;
}

/** The `Redis` instance a Cluster uses for the master of `slot`, or undefined while the slot map does not name one. */
function masterOf(cluster: Cluster, slot: number): Redis | undefined {
  const nodeKey = cluster.slots[slot]?.[0];
  if (nodeKey === undefined) return undefined;
  return cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === nodeKey);
}

/** The replica waiter for writes to `slotKey`'s slot on `redis` (any key of the queue: one slot per queue in a Cluster). */
export function createReplicaWaiter(redis: RedisClient, slotKey: string): ReplicaWaiter {
  const nodeNow: () => Redis | undefined = isCluster(redis) ? ((slot) => () => masterOf(redis, slot))(keySlot(slotKey)) : () => redis;
  return {
    link() {
      const node = nodeNow();
      return node === undefined ? undefined : { node, stream: node.stream };
    },
    async confirm(link, replicas, timeoutMs) {
      if (nodeNow() !== link.node) throw new Error("the queue's slot moved to another node after the batch was written");
      if (link.node.stream !== link.stream) throw new Error('the connection that wrote the batch was replaced before WAIT');
      const answer = await link.node.call('WAIT', String(replicas), String(Math.max(1, Math.ceil(timeoutMs))));
      // A resent WAIT (after a reconnect) has no writes behind it: its answer says nothing.
      if (link.node.stream !== link.stream) throw new Error('the connection that wrote the batch was replaced before WAIT answered');
      if (typeof answer !== 'number') throw new Error(`WAIT answered ${JSON.stringify(answer)}`);
      return answer;
    },
  };
}

import { hashTagOf } from '../config.js';
import { INBOUND_QUEUE } from './contract.js';

/**
 * The sharded inbound queue (QUEUE_SHARDS): how many queues, what each is called in Redis, and which
 * one a user's messages go to. Part of the queue contract: the gateway, the workers, the operator's
 * command line, the dashboard and the metrics all name the queues from here. No BullMQ, no Redis.
 *
 * **A layout** is QUEUE_PREFIX split into N queues (all named {@link INBOUND_QUEUE}, each under
 * a BullMQ prefix of its own):
 * - N = 1: the one queue under QUEUE_PREFIX itself (`wx` stays `wx`, `{wx}` stays `{wx}`): what
 *   every release before sharding wrote;
 * - N > 1: shard i under QUEUE_PREFIX with its hash tag replaced by `<tag>-<i>of<N>` (an untagged
 *   prefix becomes the tag: `wx` → `{wx-0of3}`, `{wx}` → `{wx-0of3}`, `app{wx}` → `app{wx-0of3}`), and,
 *   when that tag's cluster slot is not where shard i should sit, `<tag>-<i>of<N>-<k>` for the least k
 *   that is ({@link shardPrefix}). Shard i's slot lies in the middle half of the i-th of N equal
 *   parts of the slot space, so a cluster whose slots are spread evenly over N masters (as
 *   `redis-cli --cluster create` spreads them) holds one shard per master. The layouts of two
 *   different N never share a queue.
 *
 * **A user's shard** is FNV-1a (32 bit) of the openid's UTF-8 bytes, mod N ({@link shardIndexOf}): a
 * user's messages, WeChat's retries of them and their dedup keys always meet on one queue, where
 * the per-user order is kept.
 *
 * **A change of N** runs with two layouts at once (QUEUE_SHARDS and QUEUE_SHARDS_ALSO,
 * {@link queueLayouts}): README "Scaling", "Changing QUEUE_SHARDS".
 */

/** QUEUE_SHARDS at most (each shard is one BullMQ worker, with its blocking connection, per worker process). */
export const MAX_QUEUE_SHARDS = 32;

/** Redis Cluster's hash slots. */
export const CLUSTER_SLOTS = 16_384;

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

/** CRC16-CCITT (XMODEM), as Redis Cluster computes it. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff]!;
  return crc;
}

/** The cluster hash slot of `key`, as `CLUSTER KEYSLOT` gives it: of its hash tag when it has one. */
export function keySlot(key: string): number {
  const tag = hashTagOf(key);
  return crc16(Buffer.from(tag ?? key, 'utf8')) % CLUSTER_SLOTS;
}

/** FNV-1a, 32 bit, of the UTF-8 bytes of `text`. */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

function checkShards(shards: number): void {
  if (!Number.isInteger(shards) || shards < 1 || shards > MAX_QUEUE_SHARDS) throw new RangeError(`queue shards must be a whole number 1–${MAX_QUEUE_SHARDS} (got ${shards})`);
}

/** The shard of `openid`'s messages among `shards`: FNV-1a (32 bit) of its UTF-8 bytes, mod `shards`. Stable: never change it. */
export function shardIndexOf(openid: string, shards: number): number {
  checkShards(shards);
  return shards === 1 ? 0 : fnv1a32(openid) % shards;
}

/** The slots shard `index` of `shards` aims at: the middle half of the `index`-th of `shards` equal parts. */
export function targetSlots(shards: number, index: number): { readonly from: number; readonly to: number } {
  const lo = (CLUSTER_SLOTS * index) / shards;
  const hi = (CLUSTER_SLOTS * (index + 1)) / shards;
  const quarter = (hi - lo) / 4;
  return { from: Math.ceil(lo + quarter), to: Math.floor(hi - quarter) };
}

/**
 * Shard `index`'s BullMQ prefix among `shards`, derived from `queuePrefix` (see the module). Pure:
 * every service derives the same names.
 */
export function shardPrefix(queuePrefix: string, shards: number, index: number): string {
  checkShards(shards);
  if (!Number.isInteger(index) || index < 0 || index >= shards) throw new RangeError(`shard ${index} of ${shards} does not exist`);
  if (shards === 1) return queuePrefix;
  const tag = hashTagOf(queuePrefix);
  const base = tag ?? queuePrefix;
  const wrap = (shardTag: string): string => (tag === undefined ? `{${shardTag}}` : queuePrefix.replace(`{${tag}}`, `{${shardTag}}`));
  const { from, to } = targetSlots(shards, index);
  const first = `${base}-${index}of${shards}`;
  for (let k = 0; k < 1_000_000; k++) {
    const candidate = k === 0 ? first : `${first}-${k}`;
    const slot = keySlot(`{${candidate}}`);
    if (slot >= from && slot <= to) return wrap(candidate);
  }
  // Unreachable: about one candidate in 2 × shards lands in the range.
  throw new Error(`no hash tag found for shard ${index} of ${shards} of ${queuePrefix}`);
}

/** One queue of a layout. */
export interface QueueShard {
  /** Its place in its layout (0-based), and the layout's size. */
  readonly index: number;
  readonly shards: number;
  /** Its BullMQ prefix. */
  readonly prefix: string;
  /** Its BullMQ queue name (the same for every shard). */
  readonly queueName: string;
  /** `<prefix>:<queue>:`: a job's hash is this followed by its id (`queueKeysAt`, BullMQ's layout). */
  readonly jobPrefix: string;
  /**
   * What operators see (the `queue` label of `wxrelay_queue_jobs`, Bull Board, `wxrelay dlq`): the
   * queue name for a layout of one (`wx-inbound`, as before sharding), else `<prefix>:<queue>`
   * (`{wx-0of3}:wx-inbound`), the start of every key of the shard.
   */
  readonly name: string;
}

/** QUEUE_PREFIX split into `shards` queues, and the rule that picks a user's. */
export interface QueueLayout {
  readonly shards: number;
  readonly queues: readonly QueueShard[];
  /** The queue of `openid`'s messages. */
  shardFor(openid: string): QueueShard;
}

export function queueLayout(queuePrefix: string, shards: number, queueName: string = INBOUND_QUEUE): QueueLayout {
  checkShards(shards);
  const queues: QueueShard[] = [];
  for (let index = 0; index < shards; index++) {
    const prefix = shardPrefix(queuePrefix, shards, index);
    queues.push({ index, shards, prefix, queueName, jobPrefix: `${prefix}:${queueName}:`, name: shards === 1 ? queueName : `${prefix}:${queueName}` });
  }
  return { shards, queues, shardFor: (openid) => queues[shardIndexOf(openid, shards)]! };
}

/**
 * The layouts in use: `current` (QUEUE_SHARDS), where new messages go, and, while QUEUE_SHARDS
 * changes, `also` (QUEUE_SHARDS_ALSO), the other one: the workers consume its queues too, and the
 * gateways recognise the messages it holds.
 */
export interface QueueLayouts {
  readonly current: QueueLayout;
  readonly also?: QueueLayout;
  /** Every queue in use: the current layout's, then the other's. */
  readonly all: readonly QueueShard[];
  /**
   * During a change, the layout with fewer shards: its dedup keys are the one place that says which
   * layout holds a message (the gateways of both settings consult them atomically).
   */
  readonly arbiter?: QueueLayout;
  /** The other layout's queue of `openid`, when there is another layout and it is not `queue` itself. */
  counterpart(queue: QueueShard, openid: string): QueueShard | undefined;
}

/** `alsoShards` undefined, 0 or equal to `shards`: one layout. */
export function queueLayouts(queuePrefix: string, shards: number, alsoShards?: number, queueName: string = INBOUND_QUEUE): QueueLayouts {
  const current = queueLayout(queuePrefix, shards, queueName);
  if (alsoShards === undefined || alsoShards === 0 || alsoShards === shards) {
    return { current, all: current.queues, counterpart: () => undefined };
  }
  const also = queueLayout(queuePrefix, alsoShards, queueName);
  return {
    current,
    also,
    all: [...current.queues, ...also.queues],
    arbiter: also.shards < current.shards ? also : current,
    counterpart(queue, openid) {
      const other = queue.shards === current.shards ? also : current;
      const found = other.shardFor(openid);
      return found.prefix === queue.prefix ? undefined : found;
    },
  };
}

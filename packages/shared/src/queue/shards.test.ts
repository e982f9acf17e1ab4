import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ENV_VARS, hashTagOf, loadCliConfig } from '../config.js';
import { INBOUND_QUEUE } from './contract.js';
import { CLUSTER_SLOTS, fnv1a32, keySlot, MAX_QUEUE_SHARDS, queueLayout, queueLayouts, shardIndexOf, shardPrefix, targetSlots } from './shards.js';

/**
 * The sharded queue's naming and routing: pure functions every service derives the same names from.
 * The real cluster's view of the slots (which master holds each shard) is in the gateway's and the
 * worker's cluster tests; here, Redis's own published values.
 */

describe('keySlot: Redis Cluster HASH_SLOT', () => {
  it('gives the slots Redis gives (CRC16/XMODEM mod 16384, of the hash tag when there is one)', () => {
    // CRC16/XMODEM's check value ("123456789" → 0x31C3) and CLUSTER KEYSLOT answers of Redis 7.
    expect(keySlot('123456789')).toBe(0x31c3);
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('somekey')).toBe(11058);
    expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'));
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'));
    // Empty braces are no tag: the whole key is hashed.
    expect(keySlot('foo{}{bar}')).toBe(keySlot('foo{}{bar}'));
    expect(keySlot('{wx}:wx-inbound:wait')).toBe(keySlot('wx'));
  });
});

describe('shardIndexOf: a user always on the same shard', () => {
  it('is FNV-1a (32 bit) of the UTF-8 openid, mod the shard count', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
    const openid = 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o';
    for (const n of [1, 2, 3, 7, 32]) expect(shardIndexOf(openid, n)).toBe(fnv1a32(openid) % n);
    expect(shardIndexOf('用户', 5)).toBe(fnv1a32('用户') % 5);
  });

  it('is stable: pinned values (changing them would move users mid-conversation)', () => {
    expect(['oA', 'oB', 'oC', 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o', 'o6_bmjrPTlm6_2sgVt7hMZOPfL2M'].map((o) => shardIndexOf(o, 3))).toEqual([1, 1, 0, 1, 2]);
    expect(shardIndexOf('anything', 1)).toBe(0);
  });

  it('spreads users evenly', () => {
    const counts = [0, 0, 0];
    for (let i = 0; i < 30_000; i++) counts[shardIndexOf(`o${randomBytes(12).toString('base64url')}`, 3)]! += 1;
    for (const c of counts) expect(c / 30_000).toBeGreaterThan(0.3);
  });

  it('refuses a shard count out of range', () => {
    expect(() => shardIndexOf('o', 0)).toThrow(RangeError);
    expect(() => shardIndexOf('o', MAX_QUEUE_SHARDS + 1)).toThrow(RangeError);
  });
});

describe('shardPrefix: each shard under a hash tag of its own', () => {
  it('one shard is the queue prefix itself: nothing moves when sharding arrives', () => {
    for (const prefix of ['wx', '{wx}', 'app{wx}b', 'my-prefix_1']) expect(shardPrefix(prefix, 1, 0)).toBe(prefix);
  });

  it('several: the tag (or the untagged prefix) becomes <tag>-<i>of<N>[-k]', () => {
    expect(queueLayout('wx', 3).queues.map((q) => q.prefix)).toEqual(['{wx-0of3-4}', '{wx-1of3-2}', '{wx-2of3-11}']);
    expect(queueLayout('{wx}', 3).queues.map((q) => q.prefix)).toEqual(['{wx-0of3-4}', '{wx-1of3-2}', '{wx-2of3-11}']);
    expect(queueLayout('app{wx}b', 2).queues.map((q) => q.prefix)).toEqual(['app{wx-0of2}b', 'app{wx-1of2-4}b']);
    expect(queueLayout('{wx}', 3).queues.map((q) => q.name)).toEqual(['{wx-0of3-4}:wx-inbound', '{wx-1of3-2}:wx-inbound', '{wx-2of3-11}:wx-inbound']);
    expect(queueLayout('wx', 1).queues.map((q) => [q.prefix, q.name, q.jobPrefix])).toEqual([['wx', INBOUND_QUEUE, 'wx:wx-inbound:']]);
  });

  it("puts shard i's slot in the middle half of the i-th of N equal parts of the slot space, for every N and many prefixes", () => {
    for (let n = 2; n <= MAX_QUEUE_SHARDS; n++) {
      for (const base of ['wx', '{wx}', `{${randomBytes(4).toString('hex')}}`]) {
        const slots = queueLayout(base, n).queues.map((q) => keySlot(q.prefix));
        slots.forEach((slot, i) => {
          const { from, to } = targetSlots(n, i);
          expect(slot, `${base} shard ${i} of ${n}`).toBeGreaterThanOrEqual(from);
          expect(slot).toBeLessThanOrEqual(to);
        });
        expect(new Set(slots).size).toBe(n);
      }
    }
  });

  it('so with 3 masters as `redis-cli --cluster create` spreads them (0–5460, 5461–10922, 10923–16383), one shard per master', () => {
    const masters = [
      [0, 5460],
      [5461, 10922],
      [10923, CLUSTER_SLOTS - 1],
    ] as const;
    for (let i = 0; i < 50; i++) {
      const layout = queueLayout(`{${randomBytes(5).toString('hex')}}`, 3);
      const owners = layout.queues.map((q) => masters.findIndex(([from, to]) => keySlot(q.prefix) >= from && keySlot(q.prefix) <= to));
      expect(owners).toEqual([0, 1, 2]);
    }
  });

  it('keeps every script of a shard in one slot: the tag is what Redis hashes', () => {
    for (const q of queueLayout('{wx}', 4).queues) {
      expect(hashTagOf(q.prefix)).toBe(q.prefix.slice(1, -1));
      expect(keySlot(`${q.jobPrefix}wait`)).toBe(keySlot(q.prefix));
    }
  });

  it('two layouts never share a queue', () => {
    const seen = new Map<string, number>();
    for (let n = 1; n <= MAX_QUEUE_SHARDS; n++) {
      for (const q of queueLayout('{wx}', n).queues) {
        expect(seen.get(q.prefix), `${q.prefix} of ${n}`).toBeUndefined();
        seen.set(q.prefix, n);
      }
    }
  });
});

describe('queueLayouts: QUEUE_SHARDS and, while it changes, QUEUE_SHARDS_ALSO', () => {
  it('one layout: every queue, no counterpart, no arbiter', () => {
    for (const also of [undefined, 0, 3]) {
      const l = queueLayouts('{wx}', 3, also);
      expect(l.also).toBeUndefined();
      expect(l.arbiter).toBeUndefined();
      expect(l.all).toHaveLength(3);
      expect(l.counterpart(l.all[0]!, 'oA')).toBeUndefined();
    }
  });

  it("two: both layouts' queues; a user's queue in the other layout; the arbiter is the one with fewer shards", () => {
    const growing = queueLayouts('{wx}', 3, 1);
    expect(growing.all.map((q) => q.prefix)).toEqual(['{wx-0of3-4}', '{wx-1of3-2}', '{wx-2of3-11}', '{wx}']);
    expect(growing.arbiter).toBe(growing.also);
    const shrinking = queueLayouts('{wx}', 1, 3);
    expect(shrinking.arbiter).toBe(shrinking.current);
    for (const openid of ['oA', 'oB', 'oC', 'oD']) {
      const home = growing.current.shardFor(openid);
      expect(growing.counterpart(home, openid)).toBe(growing.also!.queues[0]);
      expect(growing.counterpart(growing.also!.queues[0]!, openid)).toBe(home);
      expect(shrinking.counterpart(shrinking.current.queues[0]!, openid)?.prefix).toBe(home.prefix);
    }
  });
});

describe('configuration', () => {
  it('QUEUE_SHARDS allows 1 to MAX_QUEUE_SHARDS, QUEUE_SHARDS_ALSO 0 to it', () => {
    const spec = (name: string) => ENV_VARS.find((v) => v.name === name) as { min: number; max: number; default: number };
    expect([spec('QUEUE_SHARDS').min, spec('QUEUE_SHARDS').max, spec('QUEUE_SHARDS').default]).toEqual([1, MAX_QUEUE_SHARDS, 1]);
    expect([spec('QUEUE_SHARDS_ALSO').min, spec('QUEUE_SHARDS_ALSO').max, spec('QUEUE_SHARDS_ALSO').default]).toEqual([0, MAX_QUEUE_SHARDS, 0]);
  });

  it('reads both; ALSO of 0 or equal to QUEUE_SHARDS is no second layout', () => {
    expect(loadCliConfig({}).queueShards).toEqual({ count: 1 });
    expect(loadCliConfig({ QUEUE_SHARDS: '3', QUEUE_SHARDS_ALSO: '1' }).queueShards).toEqual({ count: 3, also: 1 });
    expect(loadCliConfig({ QUEUE_SHARDS: '3', QUEUE_SHARDS_ALSO: '3' }).queueShards).toEqual({ count: 3 });
    expect(() => loadCliConfig({ QUEUE_SHARDS: '0' })).toThrow(/QUEUE_SHARDS is invalid/);
    expect(() => loadCliConfig({ QUEUE_SHARDS: '33' })).toThrow(/QUEUE_SHARDS is invalid/);
  });
});

/**
 * A bounded set of the ids this process recently queued, oldest forgotten first. The gateway uses
 * it only to count WeChat's re-deliveries (a metric); exactly-once never depends on it.
 */
export interface RecentIds {
  has(id: string): boolean;
  add(id: string): void;
  readonly size: number;
}

export function createRecentIds(capacity: number): RecentIds {
  if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
  // Insertion order lives in a ring, not in the Set: taking a Set's oldest value through
  // `values().next()` walks past every entry deleted before it, which grew to ~50 µs per add
  // once the set was full (V8 compacts its table only now and then).
  const ids = new Set<string>();
  const ring = new Array<string | undefined>(capacity).fill(undefined);
  let next = 0;
  return {
    has: (id) => ids.has(id),
    add(id) {
      if (ids.has(id)) return;
      const oldest = ring[next];
      if (oldest !== undefined) ids.delete(oldest);
      ring[next] = id;
      next = next + 1 === capacity ? 0 : next + 1;
      ids.add(id);
    },
    get size() {
      return ids.size;
    },
  };
}

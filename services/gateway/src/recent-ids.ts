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
  // A Set iterates in insertion order, so its first value is the oldest.
  const ids = new Set<string>();
  return {
    has: (id) => ids.has(id),
    add(id) {
      if (ids.has(id)) return;
      ids.add(id);
      if (ids.size > capacity) {
        const oldest = ids.values().next();
        if (oldest.done !== true) ids.delete(oldest.value);
      }
    },
    get size() {
      return ids.size;
    },
  };
}

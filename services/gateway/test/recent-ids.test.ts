import { describe, expect, it } from 'vitest';
import { createRecentIds } from '../src/recent-ids.js';

describe('createRecentIds', () => {
  it('remembers ids up to its capacity, forgetting the oldest first', () => {
    const ids = createRecentIds(3);
    for (const id of ['a', 'b', 'c']) ids.add(id);
    expect(['a', 'b', 'c'].every((id) => ids.has(id))).toBe(true);
    ids.add('a');
    expect(ids.size).toBe(3);
    ids.add('d');
    expect(ids.has('a')).toBe(false);
    expect(ids.has('d')).toBe(true);
    expect(ids.size).toBe(3);
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => createRecentIds(0)).toThrow(RangeError);
  });
});

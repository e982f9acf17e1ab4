import fc from 'fast-check';
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

  it('holds exactly the last `capacity` distinct ids added, however long it runs (model check)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'), { maxLength: 200 }), (capacity, adds) => {
        const ids = createRecentIds(capacity);
        const model: string[] = [];
        for (const id of adds) {
          ids.add(id);
          if (model.includes(id)) continue;
          model.push(id);
          if (model.length > capacity) model.shift();
        }
        expect(ids.size).toBe(model.length);
        for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) expect(ids.has(id)).toBe(model.includes(id));
      }),
    );
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => createRecentIds(0)).toThrow(RangeError);
  });
});

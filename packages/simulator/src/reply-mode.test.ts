import { describe, expect, it } from 'vitest';
import { ENV_VARS } from '@wxrelay/shared';
import { REPLY_MODES, isReplyMode } from './reply-mode.js';

describe('the simulator\'s REPLY_MODE list', () => {
  // Kept apart so `pnpm start` can read it before anything is built; it must stay the config's.
  it('is the one the config table declares', () => {
    const spec = ENV_VARS.find((v) => v.name === 'REPLY_MODE');
    expect(spec?.kind).toBe('enum');
    expect(REPLY_MODES).toEqual(spec !== undefined && 'values' in spec ? spec.values : []);
    expect(isReplyMode('passive')).toBe(true);
    expect(isReplyMode('Passive')).toBe(false);
  });
});

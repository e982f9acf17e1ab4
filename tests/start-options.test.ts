import { describe, expect, it } from 'vitest';
import { StartUsageError, resolveStartOptions } from '../scripts/start-options.ts';

/** `pnpm start`'s reply mode and simulated account, from its arguments and environment. */
describe('resolveStartOptions', () => {
  it('defaults: customer-service, a verified account', () => {
    expect(resolveStartOptions([], {})).toEqual({ replyMode: 'customer-service', unverified: false, unverifiedFrom: 'reply mode', help: false });
  });

  it.each([
    [['--reply-mode=passive'], {}, 'passive'],
    [['--', '--reply-mode', 'auto'], {}, 'auto'],
    [[], { REPLY_MODE: 'auto' }, 'auto'],
    [['--reply-mode=passive'], { REPLY_MODE: 'auto' }, 'passive'],
    [[], { REPLY_MODE: '' }, 'customer-service'],
  ] as const)('%j with %j → %s (the flag wins over REPLY_MODE)', (argv, env, replyMode) => {
    expect(resolveStartOptions(argv, env).replyMode).toBe(replyMode);
  });

  it('passive mode plays an unverified account unless told otherwise', () => {
    expect(resolveStartOptions(['--reply-mode=passive'], {})).toMatchObject({ unverified: true, unverifiedFrom: 'reply mode' });
    expect(resolveStartOptions(['--reply-mode=passive', '--verified'], {})).toMatchObject({ unverified: false, unverifiedFrom: 'flag' });
    expect(resolveStartOptions([], { REPLY_MODE: 'passive', SIM_UNVERIFIED: 'false' })).toMatchObject({ unverified: false, unverifiedFrom: 'env' });
    expect(resolveStartOptions(['--reply-mode=auto'], {})).toMatchObject({ unverified: false });
  });

  it('--unverified or SIM_UNVERIFIED=true in any mode; the flag wins over the variable', () => {
    expect(resolveStartOptions(['--unverified'], {})).toMatchObject({ replyMode: 'customer-service', unverified: true, unverifiedFrom: 'flag' });
    expect(resolveStartOptions([], { SIM_UNVERIFIED: 'TRUE' })).toMatchObject({ unverified: true, unverifiedFrom: 'env' });
    expect(resolveStartOptions(['--verified'], { SIM_UNVERIFIED: 'true' })).toMatchObject({ unverified: false, unverifiedFrom: 'flag' });
  });

  it('reports every problem at once, with the usage', () => {
    let thrown: unknown;
    try {
      resolveStartOptions(['--reply-mode=fast', '--verbose', '--unverified', '--verified'], { SIM_UNVERIFIED: 'maybe' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(StartUsageError);
    expect((thrown as StartUsageError).problems).toEqual([
      'unknown argument "--verbose"',
      '--unverified and --verified contradict each other: give one',
      '--reply-mode must be customer-service, passive, auto (got "fast")',
      'SIM_UNVERIFIED must be true or false (got "maybe")',
    ]);
    expect((thrown as Error).message).toContain('usage: pnpm start');
    expect(() => resolveStartOptions(['--reply-mode'], {})).toThrow(/--reply-mode needs a value/);
    expect(() => resolveStartOptions([], { REPLY_MODE: 'Passive' })).toThrow(/REPLY_MODE must be customer-service, passive, auto \(got "Passive"\)/);
  });
});

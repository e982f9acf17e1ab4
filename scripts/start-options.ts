/**
 * What `pnpm start` is asked for on its command line and in the environment: the reply mode the
 * gateway and worker run in, and whether the simulator plays an unverified account.
 *
 * Pure (argv and env in, a value or a list of problems out), so tests can read it without
 * starting a stack.
 */
import { REPLY_MODES, isReplyMode, type ReplyMode } from '../packages/simulator/src/reply-mode.ts';

export const START_USAGE = `usage: pnpm start [-- [--reply-mode=customer-service|passive|auto] [--unverified | --verified]]
  --reply-mode MODE  REPLY_MODE for the gateway and the worker (default $REPLY_MODE, else customer-service)
  --unverified       the simulator plays an account without the customer-service API (custom/send → 48001)
  --verified         it plays one with it (the default, except with --reply-mode=passive)
  SIM_UNVERIFIED=true|false says the same as --unverified / --verified; a flag wins over the environment.`;

export interface StartOptions {
  readonly replyMode: ReplyMode;
  readonly unverified: boolean;
  /** What decided `unverified`: a flag, SIM_UNVERIFIED, or the reply mode (passive → unverified). */
  readonly unverifiedFrom: 'flag' | 'env' | 'reply mode';
  readonly help: boolean;
}

/** Bad arguments or variables, every one of them, each with what to do. */
export class StartUsageError extends Error {
  override readonly name = 'StartUsageError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`${problems.join('\n')}\n${START_USAGE}`);
    this.problems = problems;
  }
}

const TRUE = ['true', '1', 'yes', 'on'];
const FALSE = ['false', '0', 'no', 'off'];

/**
 * `--reply-mode=MODE` (or `--reply-mode MODE`) over `REPLY_MODE`, default `customer-service`.
 * `--unverified` / `--verified` over `SIM_UNVERIFIED`; with neither, the simulator is unverified
 * exactly when the mode is `passive`: an account without the customer-service API is why one runs
 * passive, and the simulator then shows what such an account does (no customer-service message
 * ever reaches the user). Empty variables count as unset.
 *
 * @throws StartUsageError listing every problem.
 */
export function resolveStartOptions(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): StartOptions {
  const problems: string[] = [];
  const get = (name: string): string | undefined => (env[name] === '' ? undefined : env[name]);
  let modeFlag: string | undefined;
  let verifiedFlag: boolean | undefined;
  let help = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--reply-mode' || arg.startsWith('--reply-mode=')) {
      const value = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[(i += 1)];
      if (value === undefined || value === '') problems.push('--reply-mode needs a value: customer-service, passive or auto');
      else modeFlag = value;
    } else if (arg === '--unverified' || arg === '--verified') {
      const unverified = arg === '--unverified';
      if (verifiedFlag !== undefined && verifiedFlag !== !unverified) problems.push('--unverified and --verified contradict each other: give one');
      verifiedFlag = !unverified;
    } else if (arg === '--help' || arg === '-h') {
      help = true;
    } else if (arg !== '--') {
      problems.push(`unknown argument ${JSON.stringify(arg)}`);
    }
  }

  const modeText = modeFlag ?? get('REPLY_MODE') ?? 'customer-service';
  const source = modeFlag !== undefined ? '--reply-mode' : 'REPLY_MODE';
  if (!isReplyMode(modeText)) problems.push(`${source} must be ${REPLY_MODES.join(', ')} (got ${JSON.stringify(modeText)})`);
  const replyMode: ReplyMode = isReplyMode(modeText) ? modeText : 'customer-service';

  const envText = get('SIM_UNVERIFIED')?.toLowerCase();
  if (envText !== undefined && !TRUE.includes(envText) && !FALSE.includes(envText)) {
    problems.push(`SIM_UNVERIFIED must be true or false (got ${JSON.stringify(get('SIM_UNVERIFIED'))})`);
  }
  if (problems.length > 0) throw new StartUsageError(problems);

  if (verifiedFlag !== undefined) return { replyMode, unverified: !verifiedFlag, unverifiedFrom: 'flag', help };
  if (envText !== undefined) return { replyMode, unverified: TRUE.includes(envText), unverifiedFrom: 'env', help };
  return { replyMode, unverified: replyMode === 'passive', unverifiedFrom: 'reply mode', help };
}

import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import type { CallbackMode } from './callback-client.js';
import { formatCallback, formatWorkerEvent } from './format-event.js';
import type { InboundSpec } from './inbound-xml.js';
import { SIM_ENV_HELP, loadSimulatorSettings, openableUrl } from './serve-settings.js';
import { streamSimEvents } from './sim-event-stream.js';
import type { CallbackEvent } from './sim-events.js';
import { startSimulator } from './simulator-server.js';
import { SPEC_USAGE, SpecArgsError, parseSpecArgs } from './spec-args.js';

/** The process the CLI talks through (a test passes its own streams). */
export interface CliIo {
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly stdin: Readable;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM): every command then ends cleanly. */
  readonly stopSignal: Promise<void>;
}

export const EXIT = { ok: 0, gatewayFailed: 1, usage: 2, unreachable: 3 } as const;

const DEFAULT_SIM_URL = 'http://127.0.0.1:4000';
const MODES: readonly string[] = ['plain', 'compat', 'safe'];

export const USAGE = `wxrelay simulator

  sim send TYPE [ARGS…] [--user NAME] [--mode plain|compat|safe] [--sim URL] [--wait SECONDS]
      Sends one push as the user, prints the gateway's answer, then the workers' replies for
      --wait seconds (default 10). TYPE and ARGS:
        ${SPEC_USAGE.join('\n        ')}
  sim chat [--user NAME] [--mode …] [--sim URL]
      Interactive chat: each line is a text message; /follow, /unfollow, /click KEY,
      /send TYPE ARGS…, /quit.
  sim serve [--unverified]
      Starts the simulator (fake WeChat API + chat page + /sim API) from the environment;
      --unverified (or SIM_UNVERIFIED=true) plays an account without the customer-service API:
        ${SIM_ENV_HELP.join('\n        ')}

  --sim defaults to $SIM_URL or ${DEFAULT_SIM_URL}; --user to alice.
`;

class UsageError extends Error {
  override readonly name = 'UsageError';
}

interface CliOptions {
  readonly positionals: readonly string[];
  readonly user: string;
  readonly mode?: CallbackMode;
  readonly simUrl: string;
  readonly waitSeconds: number;
  readonly help: boolean;
  /** `--unverified` (serve only). */
  readonly unverified: boolean;
}

const VALUE_OPTIONS: Readonly<Record<string, 'user' | 'mode' | 'sim' | 'wait'>> = {
  '--user': 'user',
  '-u': 'user',
  '--mode': 'mode',
  '--sim': 'sim',
  '--wait': 'wait',
  '-w': 'wait',
};

/**
 * Options anywhere on the line, everything else positional — so `location -33.86 151.21` keeps
 * its negative latitude (node's parseArgs would read it as an option).
 */
function parseCliArgs(argv: readonly string[], env: CliIo['env']): CliOptions {
  const values: Partial<Record<'user' | 'mode' | 'sim' | 'wait', string>> = {};
  const positionals: string[] = [];
  let help = false;
  let unverified = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    const [flag = '', inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const name = VALUE_OPTIONS[flag];
    if (name !== undefined) {
      const value = inline ?? argv[(i += 1)];
      if (value === undefined) throw new UsageError(`${flag} needs a value`);
      values[name] = value;
    } else if (arg === '--help' || arg === '-h') {
      help = true;
    } else if (arg === '--unverified') {
      unverified = true;
    } else if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    } else if (/^--?[A-Za-z]/.test(arg)) {
      throw new UsageError(`unknown option ${arg}`);
    } else {
      positionals.push(arg);
    }
  }
  if (values.mode !== undefined && !MODES.includes(values.mode)) throw new UsageError('--mode must be plain, compat or safe');
  const waitSeconds = Number(values.wait ?? '10');
  if (!Number.isFinite(waitSeconds) || waitSeconds < 0) throw new UsageError('--wait must be a number of seconds');
  const user = values.user ?? 'alice';
  if (user === '' || user.includes(',')) throw new UsageError('--user must be a non-empty name without commas');
  return {
    positionals,
    user,
    ...(values.mode === undefined ? {} : { mode: values.mode as CallbackMode }),
    simUrl: values.sim ?? (env['SIM_URL'] === '' ? undefined : env['SIM_URL']) ?? DEFAULT_SIM_URL,
    waitSeconds,
    help,
    unverified,
  };
}

function line(stream: Writable, text: string): void {
  stream.write(`${text}\n`);
}

/** POSTs one push to a running simulator. */
async function postSend(options: CliOptions, spec: InboundSpec): Promise<CallbackEvent> {
  const response = await fetch(new URL('/sim/send', options.simUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: options.user, message: spec, ...(options.mode === undefined ? {} : { mode: options.mode }) }),
  });
  const json = (await response.json()) as CallbackEvent | { message?: string };
  if (!response.ok) throw new UsageError(`simulator refused the message: ${'message' in json ? String(json.message) : response.status}`);
  return json as CallbackEvent;
}

function unreachable(io: CliIo, options: CliOptions, err: unknown): number {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err);
  line(io.stderr, `cannot reach the simulator at ${options.simUrl} (${cause}). Start it with \`pnpm sim serve\` (or \`pnpm start\`), or pass --sim URL.`);
  return EXIT.unreachable;
}

/**
 * Prints the workers' replies for the user until `signal` aborts. While `held`, lines wait (a
 * worker may answer before the gateway's answer is printed); `release()` prints them and stops holding.
 */
function printReplies(
  io: CliIo,
  options: CliOptions,
  signal: AbortSignal,
  held = false,
): ReturnType<typeof streamSimEvents> & { release(): void } {
  const waiting: string[] = [];
  let holding = held;
  const stream = streamSimEvents({
    simUrl: options.simUrl,
    users: [options.user],
    signal,
    onEvent(event) {
      const text = formatWorkerEvent(event);
      if (text === undefined) return;
      if (holding) waiting.push(text);
      else line(io.stdout, text);
    },
  });
  return {
    ...stream,
    release() {
      holding = false;
      for (const text of waiting.splice(0)) line(io.stdout, text);
    },
  };
}

async function sendCommand(io: CliIo, options: CliOptions): Promise<number> {
  const spec = parseSpecArgs(options.positionals.slice(1));
  const stop = new AbortController();
  // Listen first: a worker may answer before the gateway's answer reaches us.
  const stream = printReplies(io, options, stop.signal, true);
  try {
    await stream.ready;
    const result = await postSend(options, spec);
    line(io.stdout, formatCallback(result));
    stream.release();
    if (result.outcome === 'failed') return EXIT.gatewayFailed;
    await Promise.race([delay(options.waitSeconds * 1000, undefined, { signal: stop.signal }).catch(() => undefined), stream.done, io.stopSignal]);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    return unreachable(io, options, err);
  } finally {
    stop.abort();
  }
}

/** A chat line as a push: plain text, or one of the slash commands. `undefined` for /quit. */
function chatSpec(text: string): InboundSpec | 'quit' | 'help' {
  if (!text.startsWith('/')) return { type: 'text', content: text };
  const [command = '', ...args] = text.slice(1).split(/\s+/).filter((w) => w !== '');
  switch (command) {
    case 'quit':
    case 'exit':
      return 'quit';
    case 'follow':
      return parseSpecArgs(['subscribe', ...args]);
    case 'unfollow':
      return parseSpecArgs(['unsubscribe']);
    case 'click':
      return parseSpecArgs(['click', ...args]);
    case 'send':
      return parseSpecArgs(args);
    default:
      return 'help';
  }
}

async function chatCommand(io: CliIo, options: CliOptions): Promise<number> {
  const stop = new AbortController();
  const stream = printReplies(io, options, stop.signal);
  try {
    await stream.ready;
  } catch (err) {
    return unreachable(io, options, err);
  }
  line(io.stdout, `chatting as ${options.user} via ${options.simUrl} — /follow, /unfollow, /click KEY, /send TYPE ARGS…, /quit`);
  const rl = createInterface({ input: io.stdin, terminal: false });
  let queue = Promise.resolve();
  let failed = false;
  const handle = async (text: string): Promise<void> => {
    let spec: ReturnType<typeof chatSpec>;
    try {
      spec = chatSpec(text);
    } catch (err) {
      line(io.stdout, err instanceof Error ? err.message : String(err));
      return;
    }
    if (spec === 'quit') {
      rl.close();
      return;
    }
    if (spec === 'help') {
      line(io.stdout, 'commands: /follow [SCENE], /unfollow, /click KEY, /send TYPE ARGS…, /quit');
      return;
    }
    try {
      line(io.stdout, formatCallback(await postSend(options, spec)));
    } catch (err) {
      if (err instanceof UsageError) line(io.stdout, err.message);
      else {
        failed = true;
        unreachable(io, options, err);
        rl.close();
      }
    }
  };
  rl.on('line', (text) => {
    if (text.trim() === '') return;
    queue = queue.then(() => handle(text));
  });
  void io.stopSignal.then(() => rl.close());
  await new Promise<void>((resolve) => rl.once('close', resolve));
  await queue;
  stop.abort();
  return failed ? EXIT.unreachable : EXIT.ok;
}

async function serveCommand(io: CliIo, options: CliOptions): Promise<number> {
  const fromEnv = loadSimulatorSettings(io.env);
  const settings = options.unverified ? { ...fromEnv, unverified: true } : fromEnv;
  const sim = await startSimulator(settings);
  // Bound to 0.0.0.0 (in a container), sim.url is no address a browser opens: print one that is.
  const url = openableUrl(sim.url, settings.publicUrl);
  line(io.stdout, `simulator listening on ${url} — chat page ${url}/${url === sim.url ? '' : ` (bound to ${sim.url})`}`);
  line(io.stdout, `  pushes go to ${settings.gatewayUrl} (${settings.mode} mode, account ${sim.info.account})`);
  if (sim.info.replyMode !== undefined) line(io.stdout, `  reply mode (REPLY_MODE): ${sim.info.replyMode}`);
  if (sim.info.unverified) line(io.stdout, '  unverified account: custom/send and custom/typing answer 48001 api unauthorized');
  line(io.stdout, `  point the worker at it: WECHAT_API_BASE_URL=${url}`);
  await io.stopSignal;
  await sim.close();
  return EXIT.ok;
}

/** Runs one CLI invocation; resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let options: CliOptions;
  try {
    options = parseCliArgs(argv, io.env);
    const command = options.positionals[0];
    if (options.help || command === undefined || command === 'help') {
      io.stdout.write(USAGE);
      return options.help || command === 'help' ? EXIT.ok : EXIT.usage;
    }
    switch (command) {
      case 'send':
      case 'chat':
        if (options.unverified) throw new UsageError('--unverified is an option of sim serve (the simulator plays the account)');
        return command === 'send' ? await sendCommand(io, options) : await chatCommand(io, options);
      case 'serve':
        return await serveCommand(io, options);
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)} (send, chat, serve)`);
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof SpecArgsError) {
      line(io.stderr, err.message);
      return EXIT.usage;
    }
    line(io.stderr, err instanceof Error ? err.message : String(err));
    return EXIT.usage;
  }
}

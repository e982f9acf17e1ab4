import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { buildIfStale } from '@wxrelay/testkit';
import { beforeAll, describe, expect, it } from 'vitest';

/**
 * The package's subpaths load only what they need: `@wxrelay/shared/protocol` can be imported by
 * anything (a proxy, the simulator, another service) without the logger, the config schema, Redis
 * or an HTTP server coming along.
 *
 * Each case is a fresh `node` importing the built package by name (its `exports`, default
 * conditions: dist, as a consumer gets it), preloaded with a `module.registerHooks` resolve hook
 * that records every module the process resolves (imports and requires, packages and builtins),
 * plus the builtins Node itself loaded.
 */

const SHARED_DIR = fileURLToPath(new URL('..', import.meta.url));
const RECORDER = fileURLToPath(new URL('./test-support/record-loads.mjs', import.meta.url));

interface Loads {
  /** Package names (from node_modules) and builtins (`node:…`) the import brought in. */
  readonly modules: ReadonlySet<string>;
  /** Files of this package that were loaded, relative to its root. */
  readonly ownFiles: readonly string[];
}

const PACKAGE_OF = /\/node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\//;

/** What a child `node` running `code` resolved, and which builtins it had loaded when it exited. */
function run(code: string): { resolved: string[]; builtins: string[] } {
  // cwd is the package itself: a package may import itself by name through its `exports`.
  const { NODE_OPTIONS: _ignored, ...env } = process.env;
  const out = execFileSync(process.execPath, ['--import', RECORDER, '--input-type=module', '-e', code], {
    cwd: SHARED_DIR,
    env,
    encoding: 'utf8',
  });
  return JSON.parse(out) as { resolved: string[]; builtins: string[] };
}

let baseline: ReadonlySet<string> | undefined;

function loadsOf(specifier: string): Loads {
  // Node loads some builtins for itself depending on how it was started (`net` when its stdio is
  // a pipe): only those beyond what an empty script loads count.
  baseline ??= new Set(run('await 0;').builtins);
  const { resolved, builtins } = run(`await import(${JSON.stringify(specifier)});`);
  const modules = new Set<string>();
  const ownFiles: string[] = [];
  for (const url of resolved) {
    const pkg = PACKAGE_OF.exec(url)?.[1];
    if (pkg !== undefined) modules.add(pkg);
    else if (url.startsWith('node:')) modules.add(url);
    else if (url.startsWith('file:')) ownFiles.push(fileURLToPath(url).slice(SHARED_DIR.length));
  }
  for (const name of builtins) if (!baseline.has(name)) modules.add(`node:${name}`);
  return { modules, ownFiles };
}

const HEAVY = ['pino', 'typebox', 'ioredis', 'node:http', 'node:https', 'node:http2', 'node:net'] as const;

describe('subpath exports load only their own part', () => {
  beforeAll(() => buildIfStale([]), 120_000);

  it('@wxrelay/shared/protocol loads no pino, typebox, ioredis, or node:http/net', () => {
    const { modules, ownFiles } = loadsOf('@wxrelay/shared/protocol');
    expect(ownFiles).toContain('dist/protocol/index.js');
    expect(ownFiles.every((f) => f === 'dist/errors.js' || f.startsWith('dist/protocol/')), ownFiles.join(', ')).toBe(true);
    // The probe does see what the protocol really uses.
    expect(modules).toContain('fast-xml-parser');
    expect(modules).toContain('node:crypto');
    for (const heavy of HEAVY) expect(modules, heavy).not.toContain(heavy);
  });

  it.each([
    ['@wxrelay/shared/config', ['typebox'], ['pino', 'ioredis', 'fast-xml-parser', 'node:http']],
    ['@wxrelay/shared/logging', ['pino'], ['typebox', 'ioredis', 'fast-xml-parser', 'node:http']],
    ['@wxrelay/shared/redis', ['ioredis'], ['bullmq', 'pino', 'typebox', 'fast-xml-parser', 'node:http']],
  ] as const)('%s loads %j and none of %j', (specifier, loaded, absent) => {
    const { modules } = loadsOf(specifier);
    for (const name of loaded) expect(modules, name).toContain(name);
    for (const name of absent) expect(modules, name).not.toContain(name);
  });

  it('the root keeps exporting everything (and so loads pino, typebox and node:http: the probe sees them)', () => {
    const { modules } = loadsOf('@wxrelay/shared');
    for (const name of ['pino', 'typebox', 'fast-xml-parser', 'node:http']) expect(modules, name).toContain(name);
  });
});

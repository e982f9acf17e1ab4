/**
 * `pnpm config:docs`: writes README.md's configuration table (between the config-table markers)
 * from the variables declared once in packages/shared/src/config.ts (`ENV_VARS`: name, services,
 * default, accepted values, description, secret). `--check` only reports, exiting 1 when the README
 * is stale. tests/config-docs.test.ts fails on a stale README too, and checks .env.example (kept by
 * hand) against the same table.
 *
 * Runs with plain `node` (type stripping) on the built package (`pnpm config:docs` builds it first);
 * the test imports the functions below with the table from the sources.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as SharedConfig from '../packages/shared/src/config.ts';
import type { EnvVarSpec } from '../packages/shared/src/config.ts';

export const CONFIG_TABLE_START = '<!-- config-table:start -->';
export const CONFIG_TABLE_END = '<!-- config-table:end -->';
/** What to run when the README's table is stale. */
export const CONFIG_DOCS_COMMAND = 'pnpm config:docs';

const code = (value: string | number | boolean): string => `\`${String(value)}\``;
/** A markdown table cell: `|` would end it. */
const cell = (text: string): string => text.replace(/\|/g, '\\|');

function defaultText(v: EnvVarSpec): string {
  if (v.required === true) return '— (required)';
  if ('default' in v && v.default !== undefined) {
    const d = v.default;
    if (typeof d === 'object') return Object.entries(d).map(([service, value]) => `${code(value)} (${service})`).join(', ');
    return code(d);
  }
  return v.unset === undefined ? 'unset' : `unset: ${v.unset}`;
}

function acceptsText(v: EnvVarSpec): string {
  switch (v.kind) {
    case 'integer':
      return `${v.min}–${v.max}`;
    case 'enum':
      return v.values.map(code).join(', ');
    case 'boolean':
      return '`true`, `false`';
    case 'url':
      return v.protocols.map((p) => code(`${p}//…`)).join(', ');
    case 'aesKey':
      return '43 letters/digits';
    case 'string':
      return v.pattern === undefined ? 'any' : code(v.pattern);
    case 'text':
      return 'any (kept as written)';
  }
}

/** README's configuration table: one row per variable, in the table's order. */
export function configTable(vars: readonly EnvVarSpec[]): string {
  const rows = vars.map((v) =>
    [`${code(v.name)}${v.secret === true ? ' (secret)' : ''}`, v.services.join(', '), defaultText(v), acceptsText(v), v.description].map(cell),
  );
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(['variable', 'used by', 'default', 'accepts', 'meaning']), '|---|---|---|---|---|', ...rows.map(line)].join('\n');
}

/** `readme` with the text between the markers replaced by {@link configTable}. */
export function withConfigTable(readme: string, vars: readonly EnvVarSpec[]): string {
  const start = readme.indexOf(CONFIG_TABLE_START);
  const end = readme.indexOf(CONFIG_TABLE_END);
  if (start < 0 || end < start) throw new Error(`README.md lacks the markers ${CONFIG_TABLE_START} … ${CONFIG_TABLE_END}`);
  return `${readme.slice(0, start)}${CONFIG_TABLE_START}\n${configTable(vars)}\n${readme.slice(end)}`;
}

const self = fileURLToPath(import.meta.url);
if (process.argv[1] !== undefined && resolve(process.argv[1]) === self) {
  const root = resolve(dirname(self), '..');
  const { ENV_VARS } = (await import(pathToFileURL(join(root, 'packages/shared/dist/config.js')).href)) as typeof SharedConfig;
  const path = join(root, 'README.md');
  const readme = readFileSync(path, 'utf8');
  const updated = withConfigTable(readme, ENV_VARS);
  if (updated === readme) {
    process.stdout.write('README.md: the configuration table is up to date\n');
  } else if (process.argv.includes('--check')) {
    process.stderr.write(`README.md: the configuration table is stale; run ${CONFIG_DOCS_COMMAND}\n`);
    process.exitCode = 1;
  } else {
    writeFileSync(path, updated);
    process.stdout.write('README.md: configuration table written\n');
  }
}

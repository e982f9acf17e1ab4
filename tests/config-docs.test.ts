import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_VARS, type EnvVarSpec } from '@wxrelay/shared';
import { CONFIG_DOCS_COMMAND, CONFIG_TABLE_END, CONFIG_TABLE_START, withConfigTable } from '../scripts/config-docs.ts';

/**
 * The documentation of the configuration against the one table the loaders read (ENV_VARS):
 * README's table is generated from it (`pnpm config:docs`); .env.example is written by hand (it
 * groups, explains and adds what only docker compose reads) and checked here.
 */

const root = resolve(import.meta.dirname, '..');
const read = (p: string) => readFileSync(resolve(root, p), 'utf8');

/** The part of `readme` between the config-table markers. */
const tableSection = (readme: string): string => readme.slice(readme.indexOf(CONFIG_TABLE_START), readme.indexOf(CONFIG_TABLE_END));

describe("README.md's configuration table", () => {
  it(`is the one ${CONFIG_DOCS_COMMAND} generates from ENV_VARS`, () => {
    const readme = read('README.md');
    expect(readme).toContain(CONFIG_TABLE_START);
    expect(readme).toContain(CONFIG_TABLE_END);
    expect(tableSection(readme), `README.md's configuration table is stale: run ${CONFIG_DOCS_COMMAND}`).toBe(tableSection(withConfigTable(readme, ENV_VARS)));
  });
});

interface ExampleEntry {
  readonly name: string;
  readonly value: string;
  readonly commentedOut: boolean;
  /** The comment lines of its paragraph (the non-blank lines around it). */
  readonly comments: string;
}

/** Every `NAME=value` (or `# NAME=value`) line of .env.example, with its paragraph's comments. */
function exampleEntries(text: string): ExampleEntry[] {
  const entries: ExampleEntry[] = [];
  for (const paragraph of text.split(/\n\s*\n/)) {
    const lines = paragraph.split('\n');
    const comments = lines.filter((l) => l.startsWith('#') && !/^#\s*[A-Z][A-Z0-9_]*=/.test(l)).join('\n');
    for (const line of lines) {
      const m = /^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
      if (m !== null) entries.push({ name: m[2]!, value: m[3]!, commentedOut: m[1] !== undefined, comments });
    }
  }
  return entries;
}

/** The value .env.example shows: the default, or nothing when there is none or it differs by service. */
function exampleValue(v: EnvVarSpec): string {
  if (!('default' in v) || v.default === undefined || typeof v.default === 'object') return '';
  return String(v.default);
}

describe('.env.example against ENV_VARS', () => {
  const vars: readonly EnvVarSpec[] = ENV_VARS;
  const entries = exampleEntries(read('.env.example'));
  /** Variables docker-compose.yml itself reads (`${NAME…}`): where to publish, Redis's fsync policy. */
  const composeOnly = new Set([...read('docker-compose.yml').matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]!));

  it('lists every variable of the table once, with its default (or empty when it has none), commented out or not', () => {
    for (const v of vars) {
      const found = entries.filter((e) => e.name === v.name);
      expect(found.length, `.env.example should list ${v.name} once`).toBe(1);
      const entry = found[0]!;
      if (entry.commentedOut) expect(['', exampleValue(v)], `${v.name} in .env.example`).toContain(entry.value);
      else expect(entry.value, `${v.name} in .env.example should be its default`).toBe(exampleValue(v));
      if (v.secret === true) expect(entry.value, `${v.name} is a secret: no sample value`).toBe('');
    }
  });

  it('has no variable the table or docker-compose.yml does not know', () => {
    const known = new Set(vars.map((v) => v.name));
    for (const e of entries) expect(known.has(e.name) || composeOnly.has(e.name), `.env.example has unknown ${e.name}`).toBe(true);
  });

  it('explains every variable, naming each value an enum accepts', () => {
    for (const v of vars) {
      const entry = entries.find((e) => e.name === v.name);
      expect(entry?.comments, `${v.name} has no comment in .env.example`).toMatch(/\S/);
      if (v.kind === 'enum') for (const value of v.values) expect(entry?.comments, `.env.example's comment on ${v.name} does not name ${value}`).toContain(value);
    }
  });
});

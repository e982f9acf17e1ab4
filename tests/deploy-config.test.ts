import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ENV_VARS } from '@wxrelay/shared';

const root = resolve(import.meta.dirname, '..');
const read = (p: string) => readFileSync(resolve(root, p), 'utf8');

interface ComposeService {
  environment?: Record<string, string>;
  command?: string[];
  ports?: string[];
  build?: { target?: string };
  profiles?: string[];
}
const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };

function varsFor(service: 'gateway' | 'worker'): string[] {
  return ENV_VARS.filter((v) => (v.services as readonly string[]).includes(service)).map((v) => v.name);
}

/** Variables compose sets itself (wiring inside the compose network), not taken from .env. */
const WIRED = new Set(['REDIS_URL', 'PORT', 'HOST', 'METRICS_PORT', 'METRICS_HOST']);

describe('docker-compose.yml against what the services really read', () => {
  for (const service of ['gateway', 'worker'] as const) {
    it(`${service}: passes every variable the service reads, and no unknown one`, () => {
      const env = compose.services[service]?.environment ?? {};
      const known = new Set(ENV_VARS.map((v) => v.name));
      for (const name of Object.keys(env)) expect(known, `${service} sets unknown ${name}`).toContain(name);
      for (const name of varsFor(service)) expect(Object.keys(env), `${service} lacks ${name}`).toContain(name);
    });

    it(`${service}: runs the same command as its package's start script`, () => {
      const pkg = JSON.parse(read(`services/${service}/package.json`)) as { scripts: { start: string } };
      expect(compose.services[service]?.command?.join(' ')).toBe(pkg.scripts.start);
      expect(compose.services[service]?.build?.target).toBe(service);
      expect(read('Dockerfile')).toMatch(new RegExp(`FROM runtime AS ${service}[\\s\\S]*?CMD \\["node", "dist/main.js"\\]`));
    });
  }

  it('publishes the gateway only; workers have no ports so they scale', () => {
    expect(compose.services.gateway?.ports).toHaveLength(1);
    expect(compose.services.worker?.ports).toBeUndefined();
    expect(compose.services.simulator?.profiles).toEqual(['sim']);
  });

  it('runs Redis with AOF every second and noeviction', () => {
    const cmd = (compose.services.redis?.command ?? []).join(' ');
    expect(cmd).toContain('--appendonly yes');
    expect(cmd).toContain('--appendfsync everysec');
    expect(cmd).toContain('--maxmemory-policy noeviction');
  });

  it('documents every variable in .env.example and README.md', () => {
    const example = read('.env.example');
    const readme = read('README.md');
    for (const v of ENV_VARS) {
      if (!(v.services as readonly string[]).some((s) => s === 'gateway' || s === 'worker')) continue;
      expect(example, `.env.example lacks ${v.name}`).toMatch(new RegExp(`^${v.name}=`, 'm'));
      expect(readme, `README lacks ${v.name}`).toContain(`\`${v.name}\``);
    }
    for (const line of example.split('\n').filter((l) => /^[A-Z_]+=/.test(l))) {
      const name = line.split('=')[0]!;
      const isCompose = name.endsWith('_PUBLISH_PORT');
      expect(isCompose || ENV_VARS.some((v) => v.name === name), `.env.example has unknown ${name}`).toBe(true);
    }
    expect([...WIRED].every((n) => ENV_VARS.some((v) => v.name === n))).toBe(true);
  });

  it('is valid compose syntax (docker-compose config)', () => {
    const tool = spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0 ? 'docker-compose' : undefined;
    if (tool === undefined) throw new Error('docker-compose is not installed: apt-get install -y docker-compose (it validates offline, no engine needed)');
    const env = { ...process.env, WECHAT_APP_ID: 'wx1', WECHAT_TOKEN: 't', WECHAT_APP_SECRET: 's' };
    const services = execFileSync(tool, ['-f', 'docker-compose.yml', '--profile', 'sim', 'config', '--services'], { cwd: root, env, encoding: 'utf8' });
    expect(services.split('\n').filter(Boolean).sort()).toEqual(['gateway', 'redis', 'simulator', 'worker']);
  });
});

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
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
  healthcheck?: { test?: string[] };
  depends_on?: Record<string, { condition?: string }>;
}
const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };

function varsFor(service: 'gateway' | 'worker'): string[] {
  return ENV_VARS.filter((v) => (v.services as readonly string[]).includes(service)).map((v) => v.name);
}

/** Variables compose sets itself (wiring inside the compose network), not taken from .env. */
const WIRED = new Set(['REDIS_URL', 'PORT', 'HOST', 'METRICS_PORT', 'METRICS_HOST']);

/** Variables only docker-compose.yml reads (where to publish), not a service. */
const COMPOSE_ONLY = new Set(['GATEWAY_PUBLISH_PORT', 'SIM_PUBLISH_PORT', 'WXRELAY_BIND', 'SIM_BIND']);

function composeTool(): string {
  if (spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0) return 'docker-compose';
  throw new Error('docker-compose is not installed: apt-get install -y docker-compose (it validates offline, no engine needed)');
}

/**
 * `docker-compose config` as a fresh clone sees it: the compose file in a folder whose .env is
 * `dotEnv` (none when undefined), whatever .env the working tree holds, with none of the
 * developer's variables in the environment.
 */
function resolvedCompose(dotEnv?: string): { services: Record<string, ComposeService> } {
  const dir = mkdtempSync(join(tmpdir(), 'wxrelay-compose-'));
  try {
    writeFileSync(join(dir, 'docker-compose.yml'), read('docker-compose.yml'));
    if (dotEnv !== undefined) writeFileSync(join(dir, '.env'), dotEnv);
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' };
    const out = execFileSync(composeTool(), ['config'], { cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return parse(out) as { services: Record<string, ComposeService> };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

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

  it('publishes the gateway and the chat page on 127.0.0.1 unless told otherwise; workers and Redis have no ports', () => {
    expect(compose.services.gateway?.ports).toEqual(['${WXRELAY_BIND:-127.0.0.1}:${GATEWAY_PUBLISH_PORT:-3000}:3000']);
    expect(compose.services.simulator?.ports).toEqual(['${SIM_BIND:-127.0.0.1}:${SIM_PUBLISH_PORT:-4000}:4000']);
    expect(compose.services.worker?.ports).toBeUndefined();
    expect(compose.services.redis?.ports).toBeUndefined();
    const fresh = resolvedCompose();
    expect(fresh.services.gateway?.ports).toEqual(['127.0.0.1:3000:3000/tcp']);
    expect(fresh.services.simulator?.ports).toEqual(['127.0.0.1:4000:4000/tcp']);
    const everywhere = resolvedCompose('WXRELAY_BIND=0.0.0.0\nGATEWAY_PUBLISH_PORT=8080\n');
    expect(everywhere.services.gateway?.ports).toEqual(['0.0.0.0:8080:3000/tcp']);
    expect(everywhere.services.simulator?.ports).toEqual(['127.0.0.1:4000:4000/tcp']);
  });

  it('runs Redis with AOF and noeviction (fsync policy from REDIS_APPENDFSYNC)', () => {
    const cmd = (compose.services.redis?.command ?? []).join(' ');
    expect(cmd).toContain('--appendonly yes');
    expect(cmd).toMatch(/--appendfsync \$\{REDIS_APPENDFSYNC:-(always|everysec|no)\}/);
    expect(cmd).toContain('--maxmemory-policy noeviction');
    expect(resolvedCompose('REDIS_APPENDFSYNC=always\n').services.redis?.command?.join(' ')).toContain('--appendfsync always');
  });

  it('has a healthcheck on every service, and every dependent waits for healthy', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      expect(service.healthcheck?.test?.[0], `${name} has no healthcheck`).toBe('CMD');
      for (const [dep, how] of Object.entries(service.depends_on ?? {})) {
        expect(how.condition, `${name} does not wait for ${dep} to be healthy`).toBe('service_healthy');
      }
    }
    // The chat page is up only once a message is answered: the simulator waits for gateway and worker.
    expect(Object.keys(compose.services.simulator?.depends_on ?? {}).sort()).toEqual(['gateway', 'worker']);
    // Checks that run inside the images (node is there; curl/wget are not), on the wired ports.
    expect(compose.services.gateway?.healthcheck?.test?.join(' ')).toContain("node -e fetch('http://127.0.0.1:3000/healthz')");
    // The worker's /healthz (Redis, the worker running, no 45009 pause), which needs no token.
    expect(compose.services.worker?.healthcheck?.test?.join(' ')).toContain("fetch('http://127.0.0.1:9465/healthz')");
    expect(read('Dockerfile')).toMatch(/FROM runtime AS worker[\s\S]*?HEALTHCHECK[\s\S]*?'\/healthz'\)[\s\S]*?CMD \["node", "dist\/main.js"\]/);
    expect(compose.services.worker?.environment?.METRICS_PORT).toBe('9465');
    expect(compose.services.simulator?.healthcheck?.test?.join(' ')).toContain("fetch('http://127.0.0.1:4000/')");
  });

  it('keeps .env (the AppSecret) out of the build context', () => {
    const lines = read('.dockerignore').split('\n').map((l) => l.trim());
    expect(lines).toContain('.env');
    expect(lines).toContain('.env.*');
    expect(lines).toContain('!.env.example');
    expect(lines.indexOf('!.env.example')).toBeGreaterThan(lines.indexOf('.env.*'));
  });

  it('with no .env: a working development stack (the identity of npm start, the worker on the simulator)', () => {
    const start = read('scripts/start.ts');
    const dev = (name: string): string => new RegExp(`${name}: '([^']+)'`).exec(start)?.[1] ?? `no ${name} in start.ts`;
    const { services } = resolvedCompose();
    expect(Object.keys(services).sort()).toEqual(['gateway', 'redis', 'simulator', 'worker']);
    for (const s of ['gateway', 'simulator'] as const) expect(services[s]?.environment?.WECHAT_TOKEN).toBe(dev('WECHAT_TOKEN'));
    for (const s of ['gateway', 'worker', 'simulator'] as const) expect(services[s]?.environment?.WECHAT_APP_ID).toBe(dev('WECHAT_APP_ID'));
    for (const s of ['worker', 'simulator'] as const) expect(services[s]?.environment?.WECHAT_APP_SECRET).toBe(dev('WECHAT_APP_SECRET'));
    expect(services.worker?.environment?.WECHAT_API_BASE_URL).toBe('http://simulator:4000');
    expect(services.simulator?.environment).toMatchObject({ SIM_GATEWAY_URL: 'http://gateway:3000/wx', SIM_PORT: '4000', SIM_HOST: '0.0.0.0', SIM_PUBLIC_URL: 'http://127.0.0.1:4000' });
    expect(services.simulator?.profiles).toBeUndefined();
  });

  it('with .env filled in from .env.example: the real account, the real API, and the simulator never sees the AppSecret', () => {
    const filled = read('.env.example')
      .replace(/^WECHAT_TOKEN=$/m, 'WECHAT_TOKEN=realtoken')
      .replace(/^WECHAT_APP_ID=$/m, 'WECHAT_APP_ID=wx1234567890abcdef')
      .replace(/^WECHAT_APP_SECRET=$/m, 'WECHAT_APP_SECRET=realsecret');
    const { services } = resolvedCompose(filled);
    expect(services.gateway?.environment).toMatchObject({ WECHAT_TOKEN: 'realtoken', WECHAT_APP_ID: 'wx1234567890abcdef' });
    expect(services.worker?.environment).toMatchObject({ WECHAT_APP_SECRET: 'realsecret', WECHAT_API_BASE_URL: 'https://api.weixin.qq.com' });
    expect(services.simulator?.environment?.WECHAT_APP_SECRET).not.toBe('realsecret');
    expect(JSON.stringify(services.simulator)).not.toContain('realsecret');
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
      const isCompose = COMPOSE_ONLY.has(name);
      expect(isCompose || ENV_VARS.some((v) => v.name === name), `.env.example has unknown ${name}`).toBe(true);
    }
    expect([...WIRED].every((n) => ENV_VARS.some((v) => v.name === n))).toBe(true);
  });

});

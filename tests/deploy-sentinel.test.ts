import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadGatewayConfig, loadWorkerConfig } from '@wxrelay/shared';

/**
 * docker-compose.sentinel.yml, the Sentinel override of docker-compose.yml (README → Scaling),
 * against what the services read. It cannot be run here (no images), so: its YAML as written, the
 * two files merged by `docker-compose config` (offline) when docker-compose is installed, and the
 * merged environment of the gateway and the worker through their real configuration loaders.
 */

const root = resolve(import.meta.dirname, '..');
const read = (p: string): string => readFileSync(resolve(root, p), 'utf8');

interface Service {
  image?: string;
  command?: string[] | string;
  environment?: Record<string, string>;
  healthcheck?: { test?: string[] };
  depends_on?: Record<string, { condition?: string }>;
}
type Compose = { services: Record<string, Service> };

const base = parse(read('docker-compose.yml'), { merge: true }) as Compose;
const override = parse(read('docker-compose.sentinel.yml'), { merge: true }) as Compose;
const SENTINELS = ['sentinel-1', 'sentinel-2', 'sentinel-3'];

const commandText = (s: Service | undefined): string => (Array.isArray(s?.command) ? s.command.join(' ') : (s?.command ?? ''));

function hasDockerCompose(): boolean {
  return spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0;
}

/** `docker-compose -f docker-compose.yml -f docker-compose.sentinel.yml config` in a clean folder, no .env. */
function merged(): Compose {
  const dir = mkdtempSync(join(tmpdir(), 'wxrelay-compose-sentinel-'));
  try {
    for (const f of ['docker-compose.yml', 'docker-compose.sentinel.yml']) writeFileSync(join(dir, f), read(f));
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' };
    const out = execFileSync('docker-compose', ['-f', 'docker-compose.yml', '-f', 'docker-compose.sentinel.yml', 'config'], { cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return parse(out) as Compose;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('docker-compose.sentinel.yml', () => {
  it("runs a replica and three sentinels on docker-compose.yml's Redis image, watching the redis service with quorum 2", () => {
    const image = base.services.redis?.image;
    expect(image).toMatch(/^redis:/);
    expect(override.services['redis-replica']?.image).toBe(image);
    expect(commandText(override.services['redis-replica'])).toMatch(/--replicaof redis 6379 .*--appendonly yes .*--maxmemory-policy noeviction/);
    // The master keeps docker-compose.yml's durability settings.
    expect(commandText(override.services.redis)).toContain(commandText(base.services.redis));
    for (const name of SENTINELS) {
      const s = override.services[name];
      expect(s?.image, name).toBe(image);
      expect(commandText(s), name).toMatch(/'sentinel monitor wxrelay redis 6379 2'/);
      expect(commandText(s), name).toMatch(/redis-server \S+ --sentinel/);
      expect(s?.healthcheck?.test?.join(' '), name).toBe('CMD redis-cli -p 26379 ping');
    }
  });

  it('points the gateway and the worker at the sentinels, and they wait for them', () => {
    for (const service of ['gateway', 'worker']) {
      const s = override.services[service];
      expect(s?.environment, service).toMatchObject({ REDIS_SENTINELS: SENTINELS.map((n) => `${n}:26379`).join(','), REDIS_SENTINEL_NAME: 'wxrelay' });
      for (const n of SENTINELS) expect(s?.depends_on?.[n]?.condition, `${service} → ${n}`).toBe('service_healthy');
    }
  });

  it.skipIf(!hasDockerCompose())('merges with docker-compose.yml (docker-compose config), and the services read a Sentinel topology from the result', () => {
    const { services } = merged();
    expect(Object.keys(services).sort()).toEqual(['gateway', 'redis', 'redis-replica', 'sentinel-1', 'sentinel-2', 'sentinel-3', 'simulator', 'worker']);
    const gateway = loadGatewayConfig(services.gateway?.environment ?? {});
    const worker = loadWorkerConfig(services.worker?.environment ?? {});
    for (const config of [gateway, worker]) {
      expect(config.redis).toEqual({ kind: 'sentinel', name: 'wxrelay', sentinels: SENTINELS.map((host) => ({ host, port: 26379 })), tls: false });
    }
    // docker-compose.yml's own dependencies stay (Redis healthy first).
    expect(services.gateway?.depends_on?.redis?.condition).toBe('service_healthy');
  });
});

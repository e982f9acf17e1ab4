import { describe, expect, it } from 'vitest';
import { isWxError } from './errors.js';
import { ENV_VARS, envDefault, loadGatewayConfig, loadWorkerConfig } from './config.js';

const KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';

function configError(fn: () => unknown): Error & { code: string } {
  try {
    fn();
  } catch (err) {
    if (isWxError(err, 'WX_ERR_CONFIG')) return err;
    throw err;
  }
  throw new Error('expected a configuration error');
}

describe('loadGatewayConfig', () => {
  it('applies the documented defaults and freezes the result', () => {
    const c = loadGatewayConfig({ WECHAT_TOKEN: 'spamtest', WECHAT_APP_ID: 'wx2c2769f8efd9abc2' });
    expect(c.port).toBe(3000);
    expect(c.host).toBe('0.0.0.0');
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.wechat.timestampToleranceSeconds).toBe(300);
    expect(c.wechat.requireEncryption).toBe(false);
    expect(c.wechat.encodingAesKeys).toEqual([]);
    expect(c.metrics).toEqual({ port: 9464, host: '127.0.0.1' });
    // No dashboard without a token; read-only unless ADMIN_ACTIONS says otherwise.
    expect(c.dashboard).toEqual({ actions: false });
    expect(loadGatewayConfig({ WECHAT_TOKEN: 'spamtest', WECHAT_APP_ID: 'wx2c2769f8efd9abc2', ADMIN_TOKEN: ' s3cret ', ADMIN_ACTIONS: 'true' }).dashboard).toEqual({ token: 's3cret', actions: true });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.wechat)).toBe(true);
  });

  it('reports a missing token and a 42-character AES key in one error, each with a hint', () => {
    const err = configError(() => loadGatewayConfig({ WECHAT_APP_ID: 'wx2c2769f8efd9abc2', WECHAT_ENCODING_AES_KEY: KEY.slice(0, 42) }));
    expect(err.message).toMatch(/WECHAT_TOKEN is missing: copy it from/);
    expect(err.message).toMatch(/WECHAT_ENCODING_AES_KEY is invalid \(42 characters\): must be exactly 43/);
    expect(err.message).toMatch(/2 configuration problem/);
    expect(err.message).not.toContain(KEY.slice(0, 42));
  });

  it('treats empty strings as unset and parses booleans honestly', () => {
    const c = loadGatewayConfig({ WECHAT_TOKEN: 't0k3n', WECHAT_APP_ID: 'wxabc123', PORT: '', WECHAT_REQUIRE_ENCRYPTION: 'yes', WECHAT_ENCODING_AES_KEY: KEY });
    expect(c.port).toBe(3000);
    expect(c.wechat.requireEncryption).toBe(true);
    const err = configError(() => loadGatewayConfig({ WECHAT_TOKEN: 't', WECHAT_APP_ID: 'wxabc123', WECHAT_REQUIRE_ENCRYPTION: 'maybe' }));
    expect(err.message).toMatch(/WECHAT_REQUIRE_ENCRYPTION is not a boolean \("maybe"\)/);
  });

  it('requires a key when encryption is required, and orders current before previous', () => {
    const err = configError(() => loadGatewayConfig({ WECHAT_TOKEN: 't', WECHAT_APP_ID: 'wxabc123', WECHAT_REQUIRE_ENCRYPTION: 'true' }));
    expect(err.message).toMatch(/WECHAT_ENCODING_AES_KEY is missing/);
    const prev = 'A'.repeat(43);
    const c = loadGatewayConfig({ WECHAT_TOKEN: 't', WECHAT_APP_ID: 'wxabc123', WECHAT_ENCODING_AES_KEY: KEY, WECHAT_PREVIOUS_ENCODING_AES_KEY: prev });
    expect(c.wechat.encodingAesKeys).toEqual([KEY, prev]);
  });

  it('rejects bad numbers, URLs and levels together', () => {
    const err = configError(() =>
      loadGatewayConfig({ WECHAT_TOKEN: 't', WECHAT_APP_ID: 'wxabc123', PORT: '70000', REDIS_URL: 'http://x', LOG_LEVEL: 'loud', WECHAT_TIMESTAMP_TOLERANCE_SECONDS: '5m' }),
    );
    for (const name of ['PORT', 'REDIS_URL', 'LOG_LEVEL', 'WECHAT_TIMESTAMP_TOLERANCE_SECONDS']) expect(err.message).toContain(name);
  });
});

describe('loadWorkerConfig', () => {
  it('needs the AppID and AppSecret, and enables the LLM only with a base URL', () => {
    const err = configError(() => loadWorkerConfig({}));
    expect(err.message).toMatch(/WECHAT_APP_ID is missing/);
    expect(err.message).toMatch(/WECHAT_APP_SECRET is missing/);
    const c = loadWorkerConfig({ WECHAT_APP_ID: 'wxabc123', WECHAT_APP_SECRET: 's3cret' });
    expect(c.llm).toBeUndefined();
    expect(c.concurrency).toBe(50);
    expect(c.welcomeMessage).toBe('Hi~ 终于等到你');
    expect(c.wechat.apiBaseUrl).toBe('https://api.weixin.qq.com');
    expect(c.wechat.tokenEndpoint).toBe('stable');
    expect(c).toMatchObject({ lockDurationMs: 20_000, stalledIntervalMs: 15_000, shutdownTimeoutMs: 25_000, wechatApiTimeoutMs: 10_000, chunkBytes: 2048, queuePrefix: 'wx' });
    const withLlm = loadWorkerConfig({ WECHAT_APP_ID: 'wxabc123', WECHAT_APP_SECRET: 's', LLM_BASE_URL: 'http://127.0.0.1:9/v1/', LLM_MODEL: 'm' });
    expect(withLlm.llm).toMatchObject({ baseUrl: 'http://127.0.0.1:9/v1', model: 'm', timeoutMs: 30_000 });
  });
});

describe('loadWorkerConfig (worker tuning)', () => {
  it('reads the worker tuning variables and reports bad ones together', () => {
    const base = { WECHAT_APP_ID: 'wxabc123', WECHAT_APP_SECRET: 's' };
    const c = loadWorkerConfig({ ...base, WORKER_LOCK_DURATION_MS: '2000', WORKER_STALLED_INTERVAL_MS: '1000', CS_CHUNK_BYTES: '600', QUEUE_PREFIX: 'test-1' });
    expect(c).toMatchObject({ lockDurationMs: 2000, stalledIntervalMs: 1000, chunkBytes: 600, queuePrefix: 'test-1' });
    const err = configError(() => loadWorkerConfig({ ...base, CS_CHUNK_BYTES: '4096', QUEUE_PREFIX: 'a:b', WORKER_LOCK_DURATION_MS: '10' }));
    for (const name of ['CS_CHUNK_BYTES', 'QUEUE_PREFIX', 'WORKER_LOCK_DURATION_MS']) expect(err.message).toContain(name);
  });
});

describe('ENV_VARS', () => {
  it('lists every variable the issue fixes, each with a hint', () => {
    const names = ENV_VARS.map((v) => v.name);
    for (const n of ['WECHAT_TOKEN', 'WECHAT_APP_ID', 'WECHAT_APP_SECRET', 'WECHAT_ENCODING_AES_KEY', 'WECHAT_API_BASE_URL', 'REDIS_URL', 'PORT', 'HOST', 'LLM_BASE_URL', 'LLM_API_KEY', 'LLM_MODEL', 'WELCOME_MESSAGE', 'WORKER_CONCURRENCY', 'LOG_LEVEL']) {
      expect(names).toContain(n);
    }
    expect(new Set(names).size).toBe(names.length);
    for (const v of ENV_VARS) expect(v.hint.length).toBeGreaterThan(0);
  });
});

describe('ENV_VARS as the one source of defaults and ranges', () => {
  it('has defaults inside their own ranges and hints that agree with them', () => {
    for (const v of ENV_VARS) {
      const spec: (typeof ENV_VARS)[number] = v;
      switch (spec.kind) {
        case 'integer': {
          const defaults = typeof spec.default === 'number' ? [spec.default] : Object.values(spec.default);
          for (const d of defaults) expect(d >= spec.min && d <= spec.max, `${spec.name} default ${d}`).toBe(true);
          const range = /(\d+)–(\d+)/.exec(spec.hint);
          if (range !== null) expect(`${range[1]}–${range[2]}`, `${spec.name}'s hint`).toBe(`${spec.min}–${spec.max}`);
          break;
        }
        case 'enum':
          expect(spec.values, spec.name).toContain(spec.default);
          for (const value of spec.values) expect(spec.hint, `${spec.name}'s hint`).toContain(value);
          break;
        case 'string':
          if ('pattern' in spec && 'default' in spec) expect(spec.default, spec.name).toMatch(new RegExp(spec.pattern));
          break;
        case 'url':
          if ('default' in spec) expect(spec.protocols, spec.name).toContain(new URL(spec.default).protocol);
          break;
        case 'boolean':
        case 'text':
        case 'aesKey':
          break;
      }
      if ('required' in v) expect('default' in v, `${v.name} is required and has a default`).toBe(false);
    }
  });

  it('gives the loaders their defaults (per service where they differ)', () => {
    const g = loadGatewayConfig({ WECHAT_TOKEN: 't', WECHAT_APP_ID: 'wxabc123' });
    const w = loadWorkerConfig({ WECHAT_APP_ID: 'wxabc123', WECHAT_APP_SECRET: 's', LLM_BASE_URL: 'http://127.0.0.1:9/v1' });
    expect(g.metrics.port).toBe(envDefault('METRICS_PORT', 'gateway'));
    expect(w.metrics.port).toBe(envDefault('METRICS_PORT', 'worker'));
    expect(envDefault('METRICS_PORT')).toBeUndefined();
    expect(g).toMatchObject({ port: envDefault('PORT'), host: envDefault('HOST'), enqueueTimeoutMs: envDefault('ENQUEUE_TIMEOUT_MS'), queuePrefix: envDefault('QUEUE_PREFIX'), logLevel: envDefault('LOG_LEVEL') });
    expect(w).toMatchObject({ concurrency: envDefault('WORKER_CONCURRENCY'), welcomeMessage: envDefault('WELCOME_MESSAGE'), inDoubtSends: envDefault('IN_DOUBT_SENDS'), llm: { model: envDefault('LLM_MODEL'), timeoutMs: envDefault('LLM_TIMEOUT_MS') } });
    expect(envDefault('LLM_API_KEY')).toBeUndefined();
  });
});

import { createServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { openMetricsListener, startMetricsServer, type MetricsServer, type PrivateRoutes } from './metrics-server.js';

let server: MetricsServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('startMetricsServer', () => {
  it('serves /metrics and nothing else', async () => {
    server = await startMetricsServer({ host: '127.0.0.1', port: 0, render: () => Promise.resolve('up 1\n'), contentType: 'text/plain; version=0.0.4' });
    const res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('version=0.0.4');
    expect(await res.text()).toBe('up 1\n');
    expect((await fetch(server.url.replace('/metrics', '/other'))).status).toBe(404);
  });

  it('demands the bearer token when one is configured', async () => {
    server = await startMetricsServer({ host: '127.0.0.1', port: 0, token: 's3cret', render: () => Promise.resolve('up 1\n'), contentType: 'text/plain' });
    expect((await fetch(server.url)).status).toBe(401);
    expect((await fetch(server.url, { headers: { authorization: 'Bearer wrong!' } })).status).toBe(401);
    const ok = await fetch(server.url, { headers: { authorization: 'Bearer s3cret' } });
    expect(ok.status).toBe(200);
  });
});

describe('openMetricsListener', () => {
  const opts = { host: '127.0.0.1', render: () => Promise.resolve('up 1\n'), contentType: 'text/plain' };

  it('serves when the port is free', async () => {
    const listener = await openMetricsListener({ ...opts, port: 0 });
    expect(listener.state).toBe('on');
    if (listener.state !== 'on') return;
    expect((await fetch(listener.server.url)).status).toBe(200);
    await listener.server.close();
  });

  it('a port in use: off, with one warning line saying how to fix it, and no throw', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as AddressInfo).port;
    try {
      const listener = await openMetricsListener({ ...opts, port });
      expect(listener).toEqual({
        state: 'off',
        code: 'EADDRINUSE',
        warning: `metrics port ${port} in use: metrics are off for this process; set METRICS_PORT to a free port, or 0 to turn them off`,
      });
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it('any other listen error (an address not on this host): off, with the code, and no throw', async () => {
    // 192.0.2.0/24 is TEST-NET-1: never an address of this machine.
    const listener = await openMetricsListener({ ...opts, host: '192.0.2.1', port: 9 });
    expect(listener.state).toBe('off');
    if (listener.state !== 'off') return;
    expect(listener.code).toBe('EADDRNOTAVAIL');
    expect(listener.warning).toContain('192.0.2.1:9');
    expect(listener.warning).toContain('set METRICS_PORT to a free port, or 0 to turn them off');
    expect(listener.warning).not.toContain('\n');
  });

  it('a render that throws is a 500, not an uncaught error', async () => {
    server = await startMetricsServer({ ...opts, port: 0, render: () => { throw new Error('boom'); } });
    expect((await fetch(server.url)).status).toBe(500);
  });
});

describe('the private listener with service routes', () => {
  const opts = { host: '127.0.0.1', port: 0, token: 'scrape-me', render: () => Promise.resolve('up 1\n'), contentType: 'text/plain' };
  const scrape = { headers: { authorization: 'Bearer scrape-me' } };

  it('serves them beside /metrics, each with its own guard', async () => {
    server = await startMetricsServer({ ...opts, routes: [{ name: 'health', register: (app) => void app.get('/healthz', () => ({ ok: true })) }] });
    expect((await fetch(`${server.origin}/healthz`)).status).toBe(200);
    expect((await fetch(server.url)).status).toBe(401);
    expect((await fetch(server.url, scrape)).status).toBe(200);
  });

  it('an optional part that fails to register is left out, told once, and the rest still serves', async () => {
    const failures: unknown[] = [];
    const broken: PrivateRoutes = { name: 'broken', optional: { onFailure: (err) => failures.push(err) }, register: () => Promise.reject(new Error('no board today')) };
    const health: PrivateRoutes = { name: 'health', register: (app) => void app.get('/healthz', () => 'ok') };
    server = await startMetricsServer({ ...opts, routes: [broken, health] });
    expect(failures).toHaveLength(1);
    expect(String(failures[0])).toContain('no board today');
    expect((await fetch(server.url, scrape)).status).toBe(200);
    expect((await fetch(`${server.origin}/healthz`)).status).toBe(200);
  });

  it('a required part that fails: the listener is off with one warning, never a throw', async () => {
    const listener = await openMetricsListener({ ...opts, routes: [{ name: 'health', register: () => Promise.reject(new Error('broken health')) }] });
    expect(listener.state).toBe('off');
    if (listener.state !== 'off') return;
    expect(listener.warning).toContain('broken health');
    expect(listener.warning).not.toContain('\n');
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { startMetricsServer, type MetricsServer } from './metrics-server.js';

describe('startMetricsServer', () => {
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

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

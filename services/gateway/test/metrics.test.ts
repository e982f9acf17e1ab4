import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMetricsServer, type MetricsServer } from '@wxrelay/shared';
import type { TestRedis } from '@wxrelay/testkit';
import { encryptedRequest, plainRequest, startGateway, startRedis, textXml, type GatewayHarness } from './support.js';

describe('gateway metrics', () => {
  let redis: TestRedis;
  let gw: GatewayHarness;
  let server: MetricsServer;
  beforeAll(async () => {
    redis = await startRedis();
    gw = await startGateway(redis);
    const registry = gw.app.metrics.registry;
    server = await startMetricsServer({ host: '127.0.0.1', port: 0, token: 'scrape-me', render: () => registry.metrics(), contentType: registry.contentType });
  });
  afterAll(async () => {
    await server.close();
    await gw.close();
    await redis.close();
  });

  it('counts callbacks by mode and outcome, and times acks and enqueues', async () => {
    const xml = textXml();
    await gw.app.inject({ method: 'POST', url: plainRequest(xml).url, payload: xml });
    await gw.app.inject({ method: 'POST', url: plainRequest(xml).url, payload: xml });
    const safe = encryptedRequest(textXml());
    await gw.app.inject({ method: 'POST', url: safe.url, payload: safe.payload });
    await gw.app.inject({ method: 'POST', url: plainRequest(xml, { token: 'wrongtoken' }).url, payload: xml });

    const res = await fetch(server.url, { headers: { authorization: 'Bearer scrape-me' } });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/wxrelay_gateway_callbacks_total\{mode="plain",outcome="queued"\} 1/);
    expect(text).toMatch(/wxrelay_gateway_callbacks_total\{mode="plain",outcome="duplicate"\} 1/);
    expect(text).toMatch(/wxrelay_gateway_callbacks_total\{mode="safe",outcome="queued"\} 1/);
    expect(text).toMatch(/wxrelay_gateway_callbacks_total\{mode="unknown",outcome="refused"\} 1/);
    expect(text).toMatch(/wxrelay_gateway_dedup_hits_total 1/);
    expect(text).toMatch(/wxrelay_gateway_ack_seconds_count\{outcome="queued"\} 2/);
    expect(text).toMatch(/wxrelay_gateway_enqueue_seconds_count 3/);
    expect(text).toContain('wxrelay_gateway_process_cpu_seconds_total');
  });

  it('is not served on the public port', async () => {
    expect((await gw.app.inject({ url: '/metrics' })).statusCode).toBe(404);
    expect((await fetch(server.url)).status).toBe(401);
  });
});

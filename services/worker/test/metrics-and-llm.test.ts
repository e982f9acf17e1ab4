import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeLlm, type FakeLlm } from '@wxrelay/simulator';
import { createHttpTransport } from '../src/http.js';
import { createLlmClient, LlmError } from '../src/replies/llm.js';
import { startMetricsServer } from '@wxrelay/shared';
import { createWorkerMetrics } from '../src/metrics.js';

describe('metrics listener', () => {
  it('serves /metrics, behind a bearer token when one is set', async () => {
    const metrics = createWorkerMetrics({ defaultMetrics: false });
    metrics.job('replied');
    metrics.apiResult('/cgi-bin/message/custom/send', 45047);
    metrics.tokenRefresh('invalidated');
    const server = await startMetricsServer({ port: 0, host: '127.0.0.1', token: 'scrape-me', render: () => metrics.registry.metrics(), contentType: metrics.registry.contentType });
    try {
      const url = server.url;
      expect((await fetch(url)).status).toBe(401);
      const res = await fetch(url, { headers: { authorization: 'Bearer scrape-me' } });
      const body = await res.text();
      expect(body).toContain('wxrelay_worker_jobs_total{outcome="replied"} 1');
      expect(body).toContain('wxrelay_worker_wechat_calls_total{path="/cgi-bin/message/custom/send",errcode="45047"} 1');
      expect(body).toContain('wxrelay_worker_token_refreshes_total{cause="invalidated"} 1');
      expect((await fetch(url.replace('/metrics', '/other'), { headers: { authorization: 'Bearer scrape-me' } })).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});

describe('createLlmClient against the fake OpenAI-compatible server', () => {
  let llm: FakeLlm;
  beforeAll(async () => {
    llm = await startFakeLlm({ apiKey: 'sk-test' });
  });
  afterAll(async () => {
    await llm.close();
  });

  it('returns the model answer and sends the model and messages', async () => {
    const client = createLlmClient({ baseUrl: llm.url, apiKey: 'sk-test', model: 'm1', timeoutMs: 5_000, transport: createHttpTransport() });
    expect(await client.complete([{ role: 'user', content: '你好' }])).toBe('Echo: 你好');
    expect(llm.requests.at(-1)).toMatchObject({ model: 'm1', messages: [{ role: 'user', content: '你好' }] });
  });

  it('calls a wrong key permanent, a 503 and a timeout transient', async () => {
    const wrong = createLlmClient({ baseUrl: llm.url, apiKey: 'nope', model: 'm', timeoutMs: 5_000, transport: createHttpTransport() });
    await expect(wrong.complete([{ role: 'user', content: 'x' }])).rejects.toMatchObject({ code: 'WX_ERR_LLM', transient: false });
    const client = createLlmClient({ baseUrl: llm.url, apiKey: 'sk-test', model: 'm', timeoutMs: 200, transport: createHttpTransport() });
    llm.inject({ status: 503 });
    await expect(client.complete([{ role: 'user', content: 'x' }])).rejects.toMatchObject({ code: 'WX_ERR_LLM', transient: true });
    llm.setDelay(1_000);
    const err = await client.complete([{ role: 'user', content: 'x' }]).catch((e: unknown) => e);
    llm.setDelay(0);
    expect(err).toBeInstanceOf(LlmError);
    expect((err as LlmError).transient).toBe(true);
    expect(String((err as Error).message)).not.toContain('sk-test');
  });
});

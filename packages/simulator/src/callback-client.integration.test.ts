import { buildIfStale, freePort, spawnService, startRedis, type SpawnedService, type TestRedis } from '@wxrelay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendCallback, type CallbackMode } from './callback-client.js';
import { createInboundXmlBuilder, type InboundSpec } from './inbound-xml.js';
import { verifyCallbackUrl } from './url-verification.js';

const TOKEN = 'simtoken123';
const APP_ID = 'wx5823bf96d3bd56c7';
const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const ACCOUNT = 'gh_7f083739789a';
const OPENID = 'oSimIntegration0000000000001';

let redis: TestRedis;
let gateway: SpawnedService;
let gatewayUrl: string;
let metricsUrl: string;
const builder = createInboundXmlBuilder({ account: ACCOUNT });

beforeAll(async () => {
  buildIfStale(['services/gateway']);
  redis = await startRedis();
  const [port, metricsPort] = [await freePort(), await freePort()];
  gateway = spawnService('services/gateway/dist/main.js', {
    WECHAT_TOKEN: TOKEN,
    WECHAT_APP_ID: APP_ID,
    WECHAT_ENCODING_AES_KEY: AES_KEY,
    REDIS_URL: redis.url,
    PORT: String(port),
    HOST: '127.0.0.1',
    METRICS_PORT: String(metricsPort),
    LOG_LEVEL: 'info',
  });
  await gateway.waitForLine(/gateway listening/);
  gatewayUrl = `http://127.0.0.1:${port}/wx`;
  metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
}, 120_000);

afterAll(async () => {
  await gateway?.stop();
  await redis?.close();
});

/** `wxrelay_gateway_callbacks_total{mode,outcome}` as the gateway counts it. */
async function callbacksCounted(mode: string, outcome: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  const line = text.split('\n').find((l) => l.startsWith(`wxrelay_gateway_callbacks_total{mode="${mode}",outcome="${outcome}"}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('against the real gateway (built, spawned, real Redis)', () => {
  it('passes URL verification', async () => {
    expect(await verifyCallbackUrl({ gatewayUrl, token: TOKEN })).toMatchObject({ ok: true, status: 200 });
  });

  it.each(['plain', 'compat', 'safe'] as const)('%s mode: a text and an event are acknowledged and enqueued', async (mode: CallbackMode) => {
    // Events dedup on FromUserName+CreateTime+Event+EventKey: a distinct key per mode.
    const before = await callbacksCounted(mode, 'queued');
    for (const spec of [{ type: 'text', content: `你好 ${mode}` }, { type: 'event', event: 'CLICK', eventKey: `MENU_${mode}` }] as InboundSpec[]) {
      const { xml } = builder.build(OPENID, spec);
      const result = await sendCallback({ gatewayUrl, token: TOKEN, appId: APP_ID, encodingAesKey: AES_KEY, mode, xml });
      expect(result).toMatchObject({ outcome: 'ack', tries: 1, status: 200, body: 'success' });
    }
    expect(await callbacksCounted(mode, 'queued')).toBe(before + 2);
  });

  it('a repeated push (same MsgId) is acknowledged once more but not enqueued twice', async () => {
    const { xml } = builder.build(OPENID, { type: 'text', content: 'twice' });
    const options = { gatewayUrl, token: TOKEN, appId: APP_ID, encodingAesKey: AES_KEY, mode: 'safe', xml } as const;
    const duplicatesBefore = await callbacksCounted('safe', 'duplicate');
    expect((await sendCallback(options)).outcome).toBe('ack');
    expect((await sendCallback(options)).outcome).toBe('ack');
    expect(await callbacksCounted('safe', 'duplicate')).toBe(duplicatesBefore + 1);
  });

  it('a push signed with the wrong token is refused on every try', async () => {
    const { xml } = builder.build(OPENID, { type: 'text', content: 'forged' });
    const result = await sendCallback({ gatewayUrl, token: 'wrongtoken', appId: APP_ID, encodingAesKey: AES_KEY, mode: 'safe', xml });
    expect(result.outcome).toBe('failed');
    expect(result.tries).toBe(3);
    expect(result.status).toBeGreaterThanOrEqual(400);
    expect(result.status).toBeLessThan(500);
  });
});

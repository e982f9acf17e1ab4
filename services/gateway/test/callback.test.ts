import { describe, expect, it } from 'vitest';
import { INBOUND_EVENTS_MAX_LEN, computeMsgSignature, jobIdFor, parseInboundMessage, toInboundJob, type InboundJobPayload } from '@wxrelay/shared';
import {
  APP_ID,
  buildTestApp,
  captureLogs,
  dedupHits,
  GH_ID,
  OPENID,
  TOKEN,
  encryptedRequest,
  eventXml,
  plainRequest,
  useGateway,
  textXml,
  uniqueMsgId,
  type GatewayHarness,
  type SignedRequest,
} from './support.js';

async function post(gw: GatewayHarness, req: SignedRequest, headers: Record<string, string> = { 'content-type': 'text/xml' }) {
  return gw.app.inject({ method: 'POST', url: req.url, payload: req.payload, headers });
}

async function jobCount(gw: GatewayHarness): Promise<number> {
  const counts = await gw.app.inboundQueue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

describe('POST /wx', () => {
  const gw = useGateway();

  describe('plain mode', () => {
    it('queues the typed message under its job id, then answers success', async () => {
      const msgId = '6054768590064713728';
      const xml = textXml({ msgId, content: '0123' });
      const res = await post(gw, plainRequest(xml));
      expect(res.statusCode).toBe(200);
      expect(res.body).toBe('success');
      expect(res.headers['content-type']).toMatch(/^text\/plain/);

      const { jobId } = toInboundJob(parseInboundMessage(xml), 'plain', 0);
      const job = await gw.app.inboundQueue.getJob(jobId);
      expect(job).toBeDefined();
      const data = job!.data as InboundJobPayload;
      expect(data).toMatchObject({ v: 1, mode: 'plain', message: { kind: 'text', msgId, content: '0123', fromUserName: OPENID, toUserName: GH_ID } });
      expect(typeof data.receivedAt).toBe('number');
      expect(data.dedupKey).toContain(msgId);
    });

    it('reads the body as XML whatever the content-type says (or when there is none)', async () => {
      const variants: Record<string, string>[] = [{ 'content-type': 'application/json' }, { 'content-type': 'application/x-www-form-urlencoded' }, { 'content-type': 'text/plain' }, {}];
      for (const headers of variants) {
        const res = await post(gw, plainRequest(textXml()), headers);
        expect(res.statusCode, JSON.stringify(headers)).toBe(200);
        expect(res.body).toBe('success');
      }
    });

    it('makes a retry of the same message a no-op: success again, no second job', async () => {
      const xml = textXml({ msgId: uniqueMsgId() });
      const before = await jobCount(gw);
      const first = await post(gw, plainRequest(xml));
      // WeChat's retry may carry a new timestamp/nonce/signature; the body is the same.
      const retries = await Promise.all([post(gw, plainRequest(xml)), post(gw, plainRequest(xml)), post(gw, plainRequest(xml))]);
      expect([first, ...retries].map((r) => r.body)).toEqual(['success', 'success', 'success', 'success']);
      expect(await jobCount(gw)).toBe(before + 1);
      const metrics = await gw.app.metrics.registry.getSingleMetricAsString('wxrelay_gateway_dedup_hits_total');
      expect(metrics).toMatch(/wxrelay_gateway_dedup_hits_total [1-9]/);
    });

    it('queues a burst larger than one batch: every callback acked once Redis has it, each re-delivery counted', async () => {
      const before = await jobCount(gw);
      const hitsBefore = await dedupHits(gw.app);
      const xmls = Array.from({ length: 200 }, () => textXml());
      const answers = await Promise.all([...xmls, ...xmls.slice(0, 50)].map((xml) => post(gw, plainRequest(xml))));
      expect(answers.every((a) => a.statusCode === 200 && a.body === 'success')).toBe(true);
      expect(await jobCount(gw)).toBe(before + 200);
      expect((await dedupHits(gw.app)) - hitsBefore).toBe(50);
    });

    it('counts a re-delivery that reaches another gateway instance (Redis says it held the message)', async () => {
      const other = await buildTestApp(gw.config, { logger: captureLogs().logger, queuePrefix: gw.prefix });
      try {
        const xml = textXml({ msgId: uniqueMsgId() });
        expect((await post(gw, plainRequest(xml))).body).toBe('success');
        const before = await jobCount(gw);
        const retry = plainRequest(xml);
        const res = await other.inject({ method: 'POST', url: retry.url, payload: retry.payload, headers: { 'content-type': 'text/xml' } });
        expect(res.body).toBe('success');
        expect(await dedupHits(other)).toBe(1);
        expect(await other.metrics.registry.getSingleMetricAsString('wxrelay_gateway_callbacks_total')).toMatch(/outcome="duplicate"\} 1/);
        expect(await jobCount(gw)).toBe(before);
      } finally {
        await other.close();
      }
    });

    it('queues two events from one user in the same second as two jobs', async () => {
      const createTime = Math.floor(Date.now() / 1000);
      const before = await jobCount(gw);
      await post(gw, plainRequest(eventXml('subscribe', { createTime, eventKey: 'qrscene_42' })));
      await post(gw, plainRequest(eventXml('LOCATION', { createTime, extra: '<Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision>' })));
      expect(await jobCount(gw)).toBe(before + 2);
    });

    it('refuses a wrong signature with 403 and queues nothing', async () => {
      const before = await jobCount(gw);
      const res = await post(gw, plainRequest(textXml(), { token: 'notthetoken' }));
      expect(res.statusCode).toBe(403);
      expect(res.body).not.toBe('success');
      expect(await jobCount(gw)).toBe(before);
    });

    it.each(['signature', 'timestamp', 'nonce'])('answers 400 when %s is missing', async (param) => {
      const req = plainRequest(textXml());
      const url = new URL(req.url, 'http://x');
      url.searchParams.delete(param);
      const res = await post(gw, { url: `${url.pathname}${url.search}`, payload: req.payload });
      expect(res.statusCode).toBe(400);
    });

    it('refuses bodies over 64 KiB with 413', async () => {
      const res = await post(gw, plainRequest(textXml({ content: 'x'.repeat(70 * 1024) })));
      expect(res.statusCode).toBe(413);
    });

    it.each([
      ['not well-formed', '<xml><ToUserName>'],
      ['a DOCTYPE', '<!DOCTYPE xml [<!ENTITY a "b">]><xml><MsgType>&a;</MsgType></xml>'],
      ['the wrong root', textXml().replace(/<xml>/, '<root>').replace(/<\/xml>/, '</root>')],
      ['no FromUserName', textXml().replace(/<FromUserName>.*<\/FromUserName>/, '')],
      ['an empty body', ''],
    ])('answers 400 for %s, with one log line naming the reason', async (_title, body) => {
      const before = gw.logs.records().length;
      const res = await post(gw, plainRequest(body));
      expect(res.statusCode).toBe(400);
      const added = gw.logs.records().slice(before);
      expect(added).toHaveLength(1);
      expect(added[0]).toMatchObject({ code: 'WX_ERR_XML', status: 400, level: 40 });
    });
  });

  describe('safe and compatible mode', () => {
    it('checks msg_signature, decrypts, and queues the decrypted message (safe)', async () => {
      const msgId = uniqueMsgId();
      const res = await post(gw, encryptedRequest(textXml({ msgId, content: 'a ]]> b' })));
      expect(res.statusCode).toBe(200);
      expect(res.body).toBe('success');
      const job = await gw.app.inboundQueue.getJob(jobIdFor(parseInboundMessage(textXml({ msgId }))));
      expect(job?.data).toMatchObject({ mode: 'safe', message: { kind: 'text', msgId } });
    });

    it('trusts only the encrypted copy in compatible mode', async () => {
      const msgId = uniqueMsgId();
      const req = encryptedRequest(textXml({ msgId, content: 'the real text' }), { compat: true });
      const tampered = { ...req, payload: req.payload.replace('the real text', 'forged text') };
      const res = await post(gw, tampered);
      expect(res.statusCode).toBe(200);
      const job = await gw.app.inboundQueue.getJob(jobIdFor(parseInboundMessage(textXml({ msgId }))));
      expect(job?.data).toMatchObject({ mode: 'compat', message: { content: 'the real text' } });
    });

    it('refuses a msg_signature that does not cover the Encrypt (403)', async () => {
      const req = encryptedRequest(textXml());
      const url = new URL(req.url, 'http://x');
      url.searchParams.set('msg_signature', computeMsgSignature(TOKEN, url.searchParams.get('timestamp')!, '1', req.encrypt));
      const res = await post(gw, { url: `${url.pathname}${url.search}`, payload: req.payload });
      expect(res.statusCode).toBe(403);
    });

    it('refuses a message encrypted for another AppID (400, one decrypt error)', async () => {
      const res = await post(gw, encryptedRequest(textXml(), { appId: 'wx0000000000000000' }));
      expect(res.statusCode).toBe(400);
      expect(gw.logs.records().at(-1)).toMatchObject({ code: 'WX_ERR_DECRYPT' });
      expect(APP_ID).not.toBe('wx0000000000000000');
    });

    it('answers 400 when msg_signature is missing or Encrypt is absent', async () => {
      const req = encryptedRequest(textXml());
      const url = new URL(req.url, 'http://x');
      url.searchParams.delete('msg_signature');
      expect((await post(gw, { url: `${url.pathname}${url.search}`, payload: req.payload })).statusCode).toBe(400);
      expect((await post(gw, { url: req.url, payload: `<xml><ToUserName><![CDATA[${GH_ID}]]></ToUserName></xml>` })).statusCode).toBe(400);
    });
  });

  describe('timestamp window', () => {
    it('refuses a stale timestamp for a message it has never seen (403)', async () => {
      const stale = String(Math.floor(Date.now() / 1000) - 3600);
      const res = await post(gw, plainRequest(textXml(), { timestamp: stale }));
      expect(res.statusCode).toBe(403);
      expect(gw.logs.records().at(-1)).toMatchObject({ code: 'WX_ERR_TIMESTAMP' });
    });

    it('still answers success to a retry of a queued message, however old its timestamp', async () => {
      const xml = textXml({ msgId: uniqueMsgId() });
      expect((await post(gw, plainRequest(xml))).body).toBe('success');
      const stale = String(Math.floor(Date.now() / 1000) - 3600);
      const retry = await post(gw, plainRequest(xml, { timestamp: stale }));
      expect(retry.statusCode).toBe(200);
      expect(retry.body).toBe('success');
    });
  });

  it('never writes openids, signatures or message text into its logs', () => {
    const text = gw.logs.lines.join('\n');
    expect(text).not.toContain(OPENID);
    expect(text).not.toContain('signature=');
    expect(text).not.toContain('the real text');
  });
});

describe('POST /wx with WECHAT_REQUIRE_ENCRYPTION=true', () => {
  const gw = useGateway({ WECHAT_REQUIRE_ENCRYPTION: 'true' });

  it('refuses plain POSTs (403) and accepts safe mode', async () => {
    const plain = await post(gw, plainRequest(textXml()));
    expect(plain.statusCode).toBe(403);
    expect(gw.logs.records().at(-1)).toMatchObject({ code: 'WX_ERR_PLAIN_REFUSED' });
    const safe = await post(gw, encryptedRequest(textXml()));
    expect(safe.body).toBe('success');
  });
});

describe('POST /wx with the timestamp check off', () => {
  const gw = useGateway({ WECHAT_TIMESTAMP_TOLERANCE_SECONDS: '0' });

  it('accepts any timestamp', async () => {
    const res = await post(gw, plainRequest(textXml(), { timestamp: '1348831860' }));
    expect(res.body).toBe('success');
  });
});

describe('the inbound queue the gateway creates', () => {
  const gw = useGateway();

  it('keeps enough events for the workers to follow a burst (per-user order reads them)', async () => {
    await post(gw, plainRequest(textXml()));
    const meta = await gw.app.redis.hget(gw.app.inboundQueue.toKey('meta'), 'opts.maxLenEvents');
    expect(Number(meta)).toBe(INBOUND_EVENTS_MAX_LEN);
  });

  it('puts the cap back when Redis lost the queue meta (flushed, or an empty replica promoted)', async () => {
    const metaKey = gw.app.inboundQueue.toKey('meta');
    await gw.app.redis.del(metaKey);
    await post(gw, plainRequest(textXml()));
    // Without it BullMQ's add script would fall back to 10,000 entries.
    expect(Number(await gw.app.redis.hget(metaKey, 'opts.maxLenEvents'))).toBe(INBOUND_EVENTS_MAX_LEN);
  });
});

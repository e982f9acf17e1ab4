import { describe, expect, it } from 'vitest';
import { computeMsgSignature, computeSignature } from '@wxrelay/shared';
import { TOKEN, encryptedRequest, eventXml, plainRequest, textXml, useGateway } from './support.js';

/** A small deterministic PRNG, so a failure can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function malformedBodies(): { title: string; body: string | Buffer }[] {
  const rand = prng(20261121);
  const valid = textXml({ msgId: '1234567890123456' });
  const out: { title: string; body: string | Buffer }[] = [];
  for (let i = 1; i < valid.length; i += 3) out.push({ title: `truncated at ${i}`, body: valid.slice(0, i) });
  for (let i = 0; i < 60; i++) {
    const bytes = Buffer.alloc(1 + Math.floor(rand() * 2000));
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rand() * 256);
    out.push({ title: `binary ${i}`, body: bytes });
  }
  for (const root of ['root', 'XML', 'html', 'xml2']) out.push({ title: `root <${root}>`, body: valid.replaceAll('xml>', `${root}>`) });
  out.push({ title: 'two roots', body: `${valid}${valid}` });
  out.push({ title: 'text after root', body: `${valid}garbage` });
  out.push({ title: 'billion laughs', body: `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><xml><Content>&lol2;</Content></xml>` });
  out.push({ title: 'external entity', body: `<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Content>&xxe;</Content></xml>` });
  out.push({ title: 'lowercase doctype', body: `<!doctype xml><xml></xml>` });
  out.push({ title: 'entity without doctype', body: `<!ENTITY a "b"><xml></xml>` });
  out.push({ title: 'deep nesting', body: `<xml>${'<a>'.repeat(5000)}${'</a>'.repeat(5000)}</xml>` });
  out.push({ title: 'many siblings', body: `<xml>${'<a>1</a>'.repeat(7000)}</xml>` });
  out.push({ title: 'huge field just under the limit', body: textXml({ content: 'é'.repeat(30_000) }) });
  out.push({ title: 'huge MsgId', body: textXml({ msgId: '9'.repeat(5000) }) });
  out.push({ title: 'CreateTime not a number', body: textXml().replace(/<CreateTime>\d+/, '<CreateTime>soon') });
  out.push({ title: 'unknown MsgType', body: textXml().replace('[text]', '[hologram]') });
  out.push({ title: 'event without Event', body: eventXml('subscribe').replace(/<Event>.*<\/Event>/, '') });
  out.push({ title: 'invalid utf-8', body: Buffer.concat([Buffer.from('<xml><Content>'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('</Content></xml>')]) });
  out.push({ title: 'NUL bytes', body: `<xml>\u0000\u0000</xml>` });
  out.push({ title: 'CDATA never closed', body: '<xml><Content><![CDATA[abc</Content></xml>' });
  out.push({ title: 'attributes everywhere', body: valid.replaceAll('<MsgId>', '<MsgId a="1" b=\'2\'>') });
  out.push({ title: 'processing instructions', body: `<?xml version="1.0"?><?pi x?>${valid}` });
  out.push({ title: 'comment bomb', body: `<xml>${'<!-- c -->'.repeat(5000)}</xml>` });
  out.push({ title: 'proto keys', body: '<xml><__proto__><polluted>1</polluted></__proto__><constructor><prototype>1</prototype></constructor><MsgType>text</MsgType></xml>' });
  return out;
}

describe('malformed bodies with valid signatures', () => {
  const gw = useGateway();

  const bodies = malformedBodies();

  it(`plain mode: ${bodies.length} bodies, no 5xx, the process stays up`, async () => {
    const statuses = new Map<number, number>();
    for (const { title, body } of bodies) {
      const { url } = plainRequest('');
      const res = await gw.app.inject({ method: 'POST', url, payload: body, headers: { 'content-type': 'text/xml' } });
      expect(res.statusCode, title).toBeLessThan(500);
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
    }
    expect(statuses.get(400) ?? 0).toBeGreaterThan(bodies.length / 2);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('safe mode: the same bodies encrypted and correctly signed, no 5xx', async () => {
    for (const { title, body } of bodies) {
      const req = encryptedRequest(typeof body === 'string' ? body : body.toString('latin1'));
      const res = await gw.app.inject({ method: 'POST', url: req.url, payload: req.payload });
      expect(res.statusCode, title).toBeLessThan(500);
    }
  });

  it('safe mode: broken Encrypt values under a valid msg_signature are a 400, never a 5xx', async () => {
    const good = encryptedRequest(textXml()).encrypt;
    const encrypts = ['', '!!!!', good.slice(0, -5), good.slice(0, 16), `${good}AAAA`, good.replace(/[A-Z]/g, 'a'), Buffer.alloc(64).toString('base64'), 'A'.repeat(44)];
    for (const encrypt of encrypts) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      const nonce = '12345';
      const q = new URLSearchParams({ signature: computeSignature(TOKEN, timestamp, nonce), timestamp, nonce, encrypt_type: 'aes', msg_signature: computeMsgSignature(TOKEN, timestamp, nonce, encrypt) });
      const res = await gw.app.inject({ method: 'POST', url: `/wx?${q.toString()}`, payload: `<xml><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>` });
      expect(res.statusCode, encrypt.slice(0, 12)).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).toBeLessThan(500);
    }
  });

  it('still answers a valid message afterwards', async () => {
    const res = await gw.app.inject({ method: 'POST', url: plainRequest('').url, payload: textXml() });
    expect(res.body).toBe('success');
    expect((await gw.app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });
});

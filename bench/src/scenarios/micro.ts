/**
 * Scenario 6: protocol micro-benchmarks, in process, with mitata's `measure` (several passes,
 * the median of their means). Ours (`@wxrelay/shared`, as built) against fast-xml-parser with its
 * default options (one `XMLParser` / `XMLBuilder` made once and reused).
 */
import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import { measure } from 'mitata';
import {
  buildReplyXml,
  computeSignature,
  decryptMessage,
  deriveAesKey,
  parseInboundMessage,
  readEncryptedEnvelope,
  verifyMsgSignature,
  verifySignature,
} from '@wxrelay/shared';
import { buildCallbackRequest } from '@wxrelay/simulator';
import { log } from '../log.ts';
import { msgIdFor, textXml } from '../payloads.ts';
import { IDENTITY, type Settings } from '../settings.ts';
import { median } from '../stats.ts';

export interface MicroResult {
  readonly name: string;
  readonly group: 'text' | 'safe' | 'reply';
  readonly impl: 'ours' | 'fast-xml-parser (default options)';
  /** Mean µs per op of each pass. */
  readonly passesUs: number[];
  readonly us: number;
  /** Median sample of the passes, µs. */
  readonly p50Us: number;
}

export interface MicroCase {
  readonly name: string;
  readonly group: MicroResult['group'];
  readonly impl: MicroResult['impl'];
  readonly fn: () => unknown;
}

/** Everything the gateway does to a text push in plain mode before it enqueues: the target's subject. */
export function verifyAndParseCase(): () => unknown {
  const xml = textXml(msgIdFor(1, 1));
  const timestamp = '1700000000';
  const nonce = '123456789';
  const signature = computeSignature(IDENTITY.token, timestamp, nonce);
  return () => {
    if (!verifySignature(IDENTITY.token, timestamp, nonce, signature)) throw new Error('bad signature');
    return parseInboundMessage(xml);
  };
}

export function microCases(): MicroCase[] {
  const xml = textXml(msgIdFor(1, 1));
  const timestamp = '1700000000';
  const nonce = '123456789';
  const signature = computeSignature(IDENTITY.token, timestamp, nonce);
  const key = deriveAesKey(IDENTITY.encodingAesKey);
  const safe = buildCallbackRequest({ gatewayUrl: 'http://127.0.0.1/wx', token: IDENTITY.token, appId: IDENTITY.appId, encodingAesKey: IDENTITY.encodingAesKey, mode: 'safe', xml, now: () => 1_700_000_000_000 });
  const q = new URL(safe.url).searchParams;
  const [ts, nc, msgSignature] = [q.get('timestamp') ?? '', q.get('nonce') ?? '', q.get('msg_signature') ?? ''];
  const encrypted = readEncryptedEnvelope(safe.body).encrypt;
  const address = { toUserName: IDENTITY.openid, fromUserName: IDENTITY.account, createTime: 1_700_000_000 };
  const fxp = new XMLParser();
  const fxb = new XMLBuilder();

  return [
    { name: 'verify + parse (text)', group: 'text', impl: 'ours', fn: verifyAndParseCase() },
    { name: 'parse (text)', group: 'text', impl: 'ours', fn: () => parseInboundMessage(xml) },
    { name: 'verify (signature)', group: 'text', impl: 'ours', fn: () => verifySignature(IDENTITY.token, timestamp, nonce, signature) },
    {
      name: 'verify + parse (text)',
      group: 'text',
      impl: 'fast-xml-parser (default options)',
      fn: () => {
        if (!verifySignature(IDENTITY.token, timestamp, nonce, signature)) throw new Error('bad signature');
        return fxp.parse(xml) as unknown;
      },
    },
    { name: 'parse (text)', group: 'text', impl: 'fast-xml-parser (default options)', fn: () => fxp.parse(xml) as unknown },
    {
      name: 'envelope + msg_signature + decrypt + parse (safe)',
      group: 'safe',
      impl: 'ours',
      fn: () => {
        const { encrypt } = readEncryptedEnvelope(safe.body);
        if (!verifyMsgSignature(IDENTITY.token, ts, nc, encrypt, msgSignature)) throw new Error('bad msg_signature');
        return parseInboundMessage(decryptMessage(key, encrypt, IDENTITY.appId).message);
      },
    },
    {
      name: 'envelope + msg_signature + decrypt + parse (safe)',
      group: 'safe',
      impl: 'fast-xml-parser (default options)',
      fn: () => {
        const envelope = fxp.parse(safe.body) as { xml: { Encrypt: string } };
        const encrypt = envelope.xml.Encrypt;
        if (!verifyMsgSignature(IDENTITY.token, ts, nc, encrypt, msgSignature)) throw new Error('bad msg_signature');
        return fxp.parse(decryptMessage(key, encrypt, IDENTITY.appId).message) as unknown;
      },
    },
    { name: 'read envelope (safe body)', group: 'safe', impl: 'ours', fn: () => readEncryptedEnvelope(safe.body) },
    { name: 'decrypt (AES-256-CBC + appid check)', group: 'safe', impl: 'ours', fn: () => decryptMessage(key, encrypted, IDENTITY.appId) },
    { name: 'build text reply', group: 'reply', impl: 'ours', fn: () => buildReplyXml({ kind: 'text', content: '收到，我们会尽快回复您。' }, address) },
    {
      name: 'build text reply',
      group: 'reply',
      impl: 'fast-xml-parser (default options)',
      fn: () =>
        fxb.build({
          xml: { ToUserName: address.toUserName, FromUserName: address.fromUserName, CreateTime: address.createTime, MsgType: 'text', Content: '收到，我们会尽快回复您。' },
        }),
    },
  ];
}

export async function runMicroScenario(settings: Settings): Promise<MicroResult[]> {
  const results: MicroResult[] = [];
  for (const c of microCases()) {
    c.fn(); // fail fast on a broken case
    const passes: number[] = [];
    const p50s: number[] = [];
    for (let pass = 0; pass < settings.micro.runs; pass++) {
      const stats = await measure(c.fn);
      passes.push(stats.avg / 1000);
      p50s.push(stats.p50 / 1000);
    }
    const r: MicroResult = { name: c.name, group: c.group, impl: c.impl, passesUs: passes, us: median(passes), p50Us: median(p50s) };
    results.push(r);
    log(`  ${c.impl}: ${c.name}: ${r.us.toFixed(2)} µs/op`);
  }
  return results;
}

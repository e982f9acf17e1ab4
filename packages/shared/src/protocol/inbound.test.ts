import { describe, expect, it } from 'vitest';
import { isWxError } from '../errors.js';
import { httpBody, loadVectors, xmlSample as sample } from '../test-support/vectors.js';
import { atPath } from '../test-support/xml-paths.js';
import { dedupKey } from './dedup.js';
import { parseInboundMessage, toInboundMessage } from './inbound.js';
import type { InboundMessage } from './messages.js';
import { parseXml } from './xml-parse.js';

type XmlSample = {
  readonly id: string;
  readonly kind: 'message' | 'event' | 'reply';
  readonly msgType?: string;
  readonly event?: string;
  readonly xml: string;
  readonly fields: Readonly<Record<string, string>>;
  readonly dedupKey?: 'MsgId' | 'FromUserName+CreateTime' | 'FromUserName+CreateTime+MsgType';
  readonly derived?: { readonly sceneValue?: string };
};

const vectors = loadVectors() as ReturnType<typeof loadVectors> & { readonly xml_samples: readonly XmlSample[] };
const inbound = vectors.xml_samples.filter((s) => s.kind !== 'reply');

/** Where each vector field (XML path) lands in the typed message (a property path). Unmapped fields fail the test. */
const TYPED: Readonly<Record<string, string | ((m: InboundMessage) => unknown)>> = {
  ToUserName: 'toUserName',
  FromUserName: 'fromUserName',
  CreateTime: 'createTime',
  MsgType: (m) => (m.kind === 'event' ? 'event' : m.kind === 'unknown' ? m.msgType : m.kind),
  MsgId: 'msgId',
  MsgDataId: 'msgDataId',
  Idx: 'idx',
  Content: 'content',
  bizmsgmenuid: 'bizmsgmenuid',
  PicUrl: 'picUrl',
  MediaId: 'mediaId',
  Format: 'format',
  Recognition: 'recognition',
  ThumbMediaId: 'thumbMediaId',
  Location_X: 'locationX',
  Location_Y: 'locationY',
  Scale: 'scale',
  Label: 'label',
  Title: 'title',
  Description: 'description',
  Url: 'url',
  Event: 'event',
  EventKey: 'eventKey',
  Ticket: 'ticket',
  Latitude: 'latitude',
  Longitude: 'longitude',
  Precision: 'precision',
  MenuId: 'menuId',
  'ScanCodeInfo.ScanType': 'scanType',
  'ScanCodeInfo.ScanResult': 'scanResult',
  'SendPicsInfo.Count': 'count',
  'SendPicsInfo.PicList.item[0].PicMd5Sum': 'picMd5Sums.0',
  'SendPicsInfo.PicList.item[1].PicMd5Sum': 'picMd5Sums.1',
  'SendLocationInfo.Location_X': 'locationX',
  'SendLocationInfo.Location_Y': 'locationY',
  'SendLocationInfo.Scale': 'scale',
  'SendLocationInfo.Label': 'label',
  'SendLocationInfo.Poiname': 'poiname',
  MsgID: 'msgId',
  Status: 'status',
  TotalCount: 'totalCount',
  FilterCount: 'filterCount',
  SentCount: 'sentCount',
  ErrorCount: 'errorCount',
  'CopyrightCheckResult.CheckState': 'copyrightCheckResult.CheckState',
  'PublishEventInfo.publish_id': 'publishId',
  'PublishEventInfo.publish_status': 'publishStatus',
  'PublishEventInfo.article_id': 'articleId',
  'SubscribeMsgPopupEvent.List.TemplateId': 'list.0.templateId',
  'SubscribeMsgPopupEvent.List.SubscribeStatusString': 'list.0.subscribeStatusString',
  KfAccount: 'kfAccount',
  FromKfAccount: 'fromKfAccount',
  ToKfAccount: 'toKfAccount',
};

/** Follows a property path (`list.0.templateId`) through a typed message. */
function propertyAt(value: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], value);
}

const TEXT = sample('msg-text');

describe('xml_samples (inbound)', () => {
  it('covers messages and events', () => {
    expect(inbound.filter((s) => s.kind === 'message').length).toBeGreaterThanOrEqual(10);
    expect(inbound.filter((s) => s.kind === 'event').length).toBeGreaterThanOrEqual(20);
  });

  it.each(inbound.map((s) => [s.id, s] as const))('%s', (_id, s) => {
    const raw = parseXml(s.xml);
    const msg = parseInboundMessage(s.xml);

    if (s.kind === 'event') {
      expect(msg.kind).toBe('event');
      expect(msg.kind === 'event' && msg.event).toBe(s.event);
    } else {
      expect(msg.kind).toBe(s.msgType);
      if (s.dedupKey === 'FromUserName+CreateTime+MsgType') expect('msgId' in msg).toBe(false);
      else expect(typeof (msg as { msgId?: unknown }).msgId).toBe('string');
    }

    for (const [path, expected] of Object.entries(s.fields)) {
      expect(atPath(raw, path), `raw ${path}`).toBe(expected);
      const typed = TYPED[path];
      expect(typed, `no typed mapping for ${path}`).toBeDefined();
      const value = typeof typed === 'function' ? typed(msg) : propertyAt(msg, typed ?? '');
      expect(typeof value === 'number' ? String(value) : value, `typed ${path}`).toBe(expected);
    }

    if (s.derived?.sceneValue !== undefined) expect((msg as { scene?: string }).scene).toBe(s.derived.sceneValue);
    if (s.dedupKey === 'MsgId') expect(dedupKey(msg)).toBe(s.fields['MsgId']);
    if (s.dedupKey === 'FromUserName+CreateTime') {
      expect(dedupKey(msg).startsWith(`${msg.fromUserName}|${msg.createTime}|`)).toBe(true);
    }
    if (s.dedupKey === 'FromUserName+CreateTime+MsgType') {
      expect(dedupKey(msg)).toBe(`${s.fields['FromUserName']}|${s.fields['CreateTime']}|${s.fields['MsgType']}`);
    }

    // Lean and JSON-serialisable: what the gateway enqueues is what the worker reads.
    expect(JSON.parse(JSON.stringify(msg))).toEqual(msg);
    expect(Object.values(msg)).not.toContain(undefined);
  });

  it('keeps a 64-bit MsgId exact, as a string', () => {
    const msg = parseInboundMessage(sample('msg-text-real-bigint-msgid'));
    expect(msg.kind === 'text' && msg.msgId).toBe('6054768590064713728');
    expect(Number('6054768590064713728')).not.toBe(6054768590064713728n);
  });

  it('keeps MsgID of template results exact', () => {
    const msg = parseInboundMessage(sample('evt-templatesendjobfinish-userblock'));
    expect(msg.kind === 'event' && msg.event === 'TEMPLATESENDJOBFINISH' && msg.msgId).toBe('3487542469355618313');
  });

  it('omits optional fields that were not sent (no undefined properties)', () => {
    const msg = parseInboundMessage(TEXT);
    expect(Object.keys(msg).sort()).toEqual(['content', 'createTime', 'fromUserName', 'kind', 'msgId', 'toUserName']);
    expect(Object.keys(parseInboundMessage(sample('msg-image-no-mediaid'))).sort()).toEqual([
      'createTime',
      'fromUserName',
      'kind',
      'picUrl',
      'toUserName',
    ]);
  });

  it('accepts messages without MsgId or without their non-essential fields', () => {
    const drop = (xml: string, tag: string): string => xml.replace(new RegExp(`<${tag}>.*?</${tag}>`), '');
    expect('msgId' in parseInboundMessage(drop(TEXT, 'MsgId'))).toBe(false);
    expect('msgId' in parseInboundMessage(TEXT.replace('1234567890123456', ''))).toBe(false);
    const bare = (tags: readonly string[], id: string): string => tags.reduce(drop, sample(id));
    const cases: readonly (readonly [string, readonly string[]])[] = [
      ['msg-image', ['PicUrl', 'MediaId', 'MsgId']],
      ['msg-voice', ['MediaId', 'Format', 'MsgId']],
      ['msg-video', ['MediaId', 'ThumbMediaId']],
      ['msg-location', ['Scale', 'Label']],
      ['msg-link', ['Title', 'Description']],
    ];
    for (const [id, tags] of cases) {
      const xml = bare(tags, id);
      for (const tag of tags) expect(xml, `${id} without ${tag}`).not.toContain(`<${tag}>`);
      const msg = parseInboundMessage(xml);
      expect(msg.kind, id).not.toBe('unknown');
      expect(Object.values(msg)).not.toContain(undefined);
    }
  });
});

describe('toInboundMessage field checks (WX_ERR_XML naming the field)', () => {
  const drop = (xml: string, tag: string): string => xml.replace(new RegExp(`<${tag}>.*?</${tag}>`), '');
  const cases: readonly (readonly [string, string, string])[] = [
    ['missing MsgType', drop(TEXT, 'MsgType'), 'MsgType'],
    ['missing ToUserName', drop(TEXT, 'ToUserName'), 'ToUserName'],
    ['missing FromUserName', drop(TEXT, 'FromUserName'), 'FromUserName'],
    ['missing CreateTime', drop(TEXT, 'CreateTime'), 'CreateTime'],
    ['non-digit CreateTime', TEXT.replace('1348831860', '1348831860.5'), 'CreateTime'],
    ['empty CreateTime', TEXT.replace('1348831860', ''), 'CreateTime'],
    ['non-digit MsgId', TEXT.replace('1234567890123456', '12:34'), 'MsgId'],
    ['missing Content', drop(TEXT, 'Content'), 'Content'],
    ['missing Location_X', drop(sample('msg-location'), 'Location_X'), 'Location_X'],
    ['missing Url on link', drop(sample('msg-link'), 'Url'), 'Url'],
    ['Content with child elements', TEXT.replace('<![CDATA[this is a test]]>', '<b>x</b>'), 'Content'],
    ['duplicate MsgType', TEXT.replace('</MsgType>', '</MsgType><MsgType>image</MsgType>'), 'MsgType'],
    ['missing Event', drop(sample('evt-click'), 'Event'), 'Event'],
    ['missing EventKey on CLICK', drop(sample('evt-click'), 'EventKey'), 'EventKey'],
    ['missing ScanCodeInfo', sample('evt-scancode-push').replace(/<ScanCodeInfo>[\s\S]*<\/ScanCodeInfo>/, ''), 'ScanCodeInfo'],
    ['missing ScanResult', drop(sample('evt-scancode-push'), 'ScanResult'), 'ScanCodeInfo.ScanResult'],
    ['non-digit pic Count', sample('evt-pic-sysphoto').replace('<Count>1</Count>', '<Count>one</Count>'), 'SendPicsInfo.Count'],
    ['missing MsgID on TEMPLATESENDJOBFINISH', drop(sample('evt-templatesendjobfinish-success'), 'MsgID'), 'MsgID'],
  ];

  it.each(cases)('%s', (_title, xml, field) => {
    try {
      parseInboundMessage(xml);
      expect.unreachable();
    } catch (err) {
      expect(isWxError(err, 'WX_ERR_XML'), String(err)).toBe(true);
      expect((err as Error).message).toContain(field);
    }
  });
});

describe('tolerated unknowns', () => {
  it('returns an unknown MsgType as kind "unknown" keeping every field', () => {
    const xml =
      '<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1700000000</CreateTime>' +
      '<MsgType><![CDATA[miniprogrampage]]></MsgType><Title><![CDATA[t]]></Title><PagePath><![CDATA[p/i]]></PagePath><MsgId>42</MsgId></xml>';
    const msg = parseInboundMessage(xml);
    expect(msg).toMatchObject({ kind: 'unknown', msgType: 'miniprogrampage', msgId: '42', fromUserName: 'o1', createTime: 1700000000 });
    expect(msg.kind === 'unknown' && msg.raw).toMatchObject({ Title: 't', PagePath: 'p/i', MsgId: '42' });
  });

  it('returns an unknown MsgType without MsgId', () => {
    const msg = parseInboundMessage(TEXT.replace('[text]', '[weird]').replace(/<MsgId>.*<\/MsgId>/, ''));
    expect(msg.kind).toBe('unknown');
    expect('msgId' in msg).toBe(false);
  });

  it('returns an unknown Event as event "other" keeping every field (official debug_demo push)', () => {
    const msg = parseInboundMessage(httpBody('official-post-safe-mode', 'expectDecrypted'));
    expect(msg).toMatchObject({ kind: 'event', event: 'other', eventName: 'debug_demo', fromUserName: 'o9AgO5Kd5ggOC-bXrbNODIiE3bGY' });
    expect(msg.kind === 'event' && msg.event === 'other' && msg.raw['debug_str']).toBe('hello world');
  });

  it('reads a subscribe with an empty EventKey as a plain follow (no scene)', () => {
    const xml = sample('evt-subscribe').replace('</Event>', '</Event><EventKey><![CDATA[]]></EventKey>');
    expect(parseInboundMessage(xml)).toMatchObject({ kind: 'event', event: 'subscribe', eventKey: '' });
    expect('scene' in parseInboundMessage(xml)).toBe(false);
  });

  it('narrows a fields object given directly', () => {
    const msg: InboundMessage = toInboundMessage({
      ToUserName: 'gh_x',
      FromUserName: 'o1',
      CreateTime: '1',
      MsgType: 'event',
      Event: 'kf_close_session',
      KfAccount: 'a@b',
    });
    expect(msg).toEqual({ kind: 'event', event: 'kf_close_session', toUserName: 'gh_x', fromUserName: 'o1', createTime: 1, kfAccount: 'a@b' });
  });
});

import { describe, expect, it } from 'vitest';
import { isWxError } from '../errors.js';
import { loadVectors } from '../test-support/vectors.js';
import { dedupKey } from './dedup.js';
import type { InboundMessage } from './messages.js';
import { parseInboundMessage, parseXml, parseXmlGeneral, readEncryptedEnvelope, toInboundMessage } from './xml.js';
import { atPath, codeOf } from '../test-support/xml-paths.js';

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
const sample = (id: string): string => {
  const found = vectors.xml_samples.find((s) => s.id === id);
  if (found === undefined) throw new Error(`no xml_samples entry ${id}`);
  return found.xml;
};
const httpBody = (id: string, key: 'body' | 'expectDecrypted'): string => {
  const value = vectors.http_requests.find((r) => r.id === id)?.[key];
  if (value === undefined) throw new Error(`no http_requests entry ${id}.${key}`);
  return value;
};

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

describe('parseXml values', () => {
  const wrap = (inner: string): string => `<xml>${inner}</xml>`;

  it('never coerces numbers: 0123 stays "0123"', () => {
    expect(parseXml(wrap('<Content>0123</Content><N>1e3</N><B>true</B>'))).toEqual({ Content: '0123', N: '1e3', B: 'true' });
  });

  it('never trims text', () => {
    expect(parseXml(wrap('<Content><![CDATA[ hi ]]></Content><T>  x  </T>'))).toEqual({ Content: ' hi ', T: '  x  ' });
  });

  it('decodes predefined entities and character references outside CDATA only', () => {
    expect(parseXml(wrap('<A>a &lt;b&gt; &amp; &quot;&apos; &#20320;&#x1F600;</A><B><![CDATA[&amp;]]></B>'))).toEqual({
      A: 'a <b> & "\' 你😀',
      B: '&amp;',
    });
  });

  it('ignores layout, comments and the XML declaration; reads CRLF as LF', () => {
    const xml = '<?xml version="1.0" encoding="UTF-8"?>\r\n<!-- hi -->\r\n<xml>\r\n  <A>1</A>\r\n  <B><![CDATA[x\r\ny]]></B>\r\n</xml>\r\n';
    expect(parseXml(xml)).toEqual({ A: '1', B: 'x\ny' });
  });

  it('keeps nested structure with item/List always arrays', () => {
    expect(parseXml(wrap('<L><item><X>1</X></item></L><List><T>a</T></List><E/><F></F>'))).toEqual({
      L: { item: [{ X: '1' }] },
      List: [{ T: 'a' }],
      E: '',
      F: '',
    });
  });

  it('reads whitespace-only text beside CDATA as layout, in both parsers', () => {
    const cases: readonly (readonly [string, string])[] = [
      ['<MsgType> <![CDATA[event]]> </MsgType>', 'event'],
      ['<A>\n    <![CDATA[ x ]]>\n  </A>', ' x '],
      ['<A>\t<![CDATA[x]]>  <![CDATA[y]]>\n</A>', 'xy'],
      ['<A> <![CDATA[a ]]]]><![CDATA[> b]]> </A>', 'a ]]> b'],
      ['<A> <![CDATA[]]> </A>', ''],
      ['<A>\r\n<![CDATA[x]]>\r\n</A>', 'x'],
    ];
    for (const [inner, value] of cases) {
      const expected = { [inner.slice(1, inner.indexOf('>'))]: value };
      expect(parseXmlGeneral(wrap(inner)), inner).toEqual(expected);
      expect(parseXml(wrap(inner)), inner).toEqual(expected);
    }
  });

  it('keeps whitespace when there is no CDATA, and text that is not only whitespace beside CDATA, as before', () => {
    for (const parse of [parseXml, parseXmlGeneral]) {
      expect(parse(wrap('<A> </A><B>\n</B>'))).toEqual({ A: ' ', B: '\n' });
      expect(parse(wrap('<A>a <![CDATA[b]]></A>'))).toEqual({ A: 'a b' });
      expect(parse(wrap('<A> a<![CDATA[b]]></A>'))).toEqual({ A: ' ab' });
      // Text after a CDATA section is still mixed content, refused as it was.
      expect(codeOf(() => parse(wrap('<A><![CDATA[b]]> c</A>')))).toBe('WX_ERR_XML');
    }
  });

  it('leaves layout beside CDATA alone where the element holds more than CDATA (comment, child element)', () => {
    expect(parseXmlGeneral(wrap('<A> <!-- c --><![CDATA[x]]></A>'))).toEqual({ A: ' x' });
    expect(parseXmlGeneral(wrap('<A><B>1</B> <![CDATA[x]]></A>'))).toEqual({ A: { B: '1', '#text': 'x' } });
  });

  it('accepts DOCTYPE-looking user text inside CDATA', () => {
    const xml = TEXT.replace('this is a test', '<!DOCTYPE html><!ENTITY x "y"> ]]&gt;');
    const msg = parseInboundMessage(xml);
    expect(msg.kind === 'text' && msg.content).toBe('<!DOCTYPE html><!ENTITY x "y"> ]]&gt;');
  });

  it('returns {} for an empty <xml/> root', () => {
    expect(parseXml('<xml/>')).toEqual({});
    expect(parseXml('<xml>\n</xml>')).toEqual({});
  });
});

describe('refused documents (WX_ERR_XML)', () => {
  const billionLaughs =
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">' +
    '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><xml><Content>&lol2;</Content></xml>';
  const cases: readonly (readonly [string, string])[] = [
    ['empty string', ''],
    ['whitespace only', ' \n '],
    ['plain text', 'success'],
    ['binary garbage', '\u0000\u0001\u00ff\u00fe\ufffd<\u0002>\u0003'],
    ['JSON', '{"ToUserName":"x"}'],
    ['truncated in a value', TEXT.slice(0, TEXT.indexOf('this is'))],
    ['truncated before </xml>', TEXT.slice(0, TEXT.lastIndexOf('</xml>'))],
    ['truncated in the closing tag', TEXT.slice(0, -2)],
    ['mismatched tags', '<xml><A>1</B></xml>'],
    ['unterminated CDATA', '<xml><A><![CDATA[x</A></xml>'],
    ['wrong root', TEXT.replace('<xml>', '<foo>').replace('</xml>', '</foo>')],
    ['two roots', `${TEXT}${TEXT}`],
    ['text after the root', `${TEXT}trailing`],
    ['DOCTYPE with entities (billion laughs)', billionLaughs],
    ['DOCTYPE without entities', `<!DOCTYPE xml>${TEXT}`],
    ['lower-case doctype', `<!doctype xml>${TEXT}`],
    ['<!ENTITY alone', TEXT.replace('<Content>', '<!ENTITY x SYSTEM "file:///etc/passwd"><Content>')],
    ['external entity reference', '<xml><A>&xxe;</A></xml>'],
    ['character reference to NUL', '<xml><A>&#0;</A></xml>'],
    ['raw ampersand', '<xml><A>a & b</A></xml>'],
    ['mixed content', '<xml>text<A>1</A></xml>'],
    ['text-only root', '<xml>hello</xml>'],
    ['__proto__ element', '<xml><__proto__><A>1</A></__proto__></xml>'],
  ];

  it.each(cases)('%s', (_title, xml) => {
    expect(codeOf(() => parseXml(xml))).toBe('WX_ERR_XML');
    expect(codeOf(() => parseInboundMessage(xml))).toBe('WX_ERR_XML');
  });

  it('never echoes document content in the message', () => {
    try {
      parseInboundMessage(TEXT.replace('<MsgId>1234567890123456</MsgId>', '<MsgId>SECRET-openid</MsgId>'));
      expect.unreachable();
    } catch (err) {
      expect(isWxError(err, 'WX_ERR_XML')).toBe(true);
      expect((err as Error).message).toContain('MsgId');
      expect((err as Error).message).not.toContain('SECRET');
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

describe('readEncryptedEnvelope', () => {
  it('reads a safe-mode body', () => {
    const env = readEncryptedEnvelope(httpBody('official-post-safe-mode', 'body'));
    expect(env.toUserName).toBe('gh_97417a04a28d');
    expect(env.encrypt.startsWith('D7yzvUNAL930rd28')).toBe(true);
    expect(env.encrypt.endsWith('Mg==')).toBe(true);
  });

  it('reads a compatible-mode body (plaintext fields + Encrypt)', () => {
    const env = readEncryptedEnvelope(httpBody('official-post-compat-mode', 'body'));
    expect(env).toMatchObject({ toUserName: 'gh_10f6c3c3ac5a' });
    expect(env.encrypt.startsWith('hyzAe4Oz')).toBe(true);
  });

  it.each([
    ['no Encrypt', TEXT],
    ['empty Encrypt', '<xml><Encrypt><![CDATA[]]></Encrypt></xml>'],
    ['not XML', 'Encrypt=abc'],
  ])('refuses %s', (_title, xml) => {
    expect(codeOf(() => readEncryptedEnvelope(xml))).toBe('WX_ERR_XML');
  });
});

import { parseInboundMessage } from '@wxrelay/shared';
import { describe, expect, it } from 'vitest';
import { createInboundXmlBuilder, windowTriggerOf, type InboundSpec } from './inbound-xml.js';

const ACCOUNT = 'gh_7f083739789a';
const OPENID = 'oia2TjuEGTNoeX76QEjQNrcURxG8';
const NOW = Date.UTC(2025, 0, 1, 8, 0, 0);

/** Each spec and the fields shared's parser must read back from the XML built for it. */
const CASES: readonly { title: string; spec: InboundSpec; parsed: Record<string, unknown> }[] = [
  { title: 'text', spec: { type: 'text', content: '你好' }, parsed: { kind: 'text', content: '你好' } },
  {
    title: 'text kept verbatim (spaces, newlines, ]]>, leading zeros)',
    spec: { type: 'text', content: ' 0123\n]]> <a href="x">y</a> ' },
    parsed: { kind: 'text', content: ' 0123\n]]> <a href="x">y</a> ' },
  },
  {
    title: 'text from a msgmenu tap',
    spec: { type: 'text', content: '满意', bizmsgmenuid: '101' },
    parsed: { kind: 'text', content: '满意', bizmsgmenuid: '101' },
  },
  {
    title: 'image',
    spec: { type: 'image', picUrl: 'https://example.com/a.jpg', mediaId: 'm1' },
    parsed: { kind: 'image', picUrl: 'https://example.com/a.jpg', mediaId: 'm1' },
  },
  { title: 'voice', spec: { type: 'voice', mediaId: 'v1' }, parsed: { kind: 'voice', mediaId: 'v1', format: 'amr' } },
  {
    title: 'voice with recognition',
    spec: { type: 'voice', mediaId: 'v1', format: 'speex', recognition: '腾讯微信团队' },
    parsed: { kind: 'voice', mediaId: 'v1', format: 'speex', recognition: '腾讯微信团队' },
  },
  {
    title: 'video',
    spec: { type: 'video', mediaId: 'vid', thumbMediaId: 'th' },
    parsed: { kind: 'video', mediaId: 'vid', thumbMediaId: 'th' },
  },
  { title: 'shortvideo', spec: { type: 'shortvideo', mediaId: 'sv' }, parsed: { kind: 'shortvideo', mediaId: 'sv' } },
  {
    title: 'location',
    spec: { type: 'location', latitude: '23.134521', longitude: '113.358803', scale: '20', label: '位置信息' },
    parsed: { kind: 'location', locationX: '23.134521', locationY: '113.358803', scale: '20', label: '位置信息' },
  },
  {
    title: 'link',
    spec: { type: 'link', url: 'https://mp.weixin.qq.com', title: '公众平台', description: '官网' },
    parsed: { kind: 'link', url: 'https://mp.weixin.qq.com', title: '公众平台', description: '官网' },
  },
  { title: 'subscribe', spec: { type: 'event', event: 'subscribe' }, parsed: { kind: 'event', event: 'subscribe', eventKey: '' } },
  {
    title: 'subscribe through a QR code',
    spec: { type: 'event', event: 'subscribe', scene: '123123', ticket: 'TICKET' },
    parsed: { event: 'subscribe', eventKey: 'qrscene_123123', scene: '123123', ticket: 'TICKET' },
  },
  { title: 'unsubscribe', spec: { type: 'event', event: 'unsubscribe' }, parsed: { event: 'unsubscribe' } },
  {
    title: 'SCAN',
    spec: { type: 'event', event: 'SCAN', eventKey: 'SCENE_VALUE', ticket: 'TICKET' },
    parsed: { event: 'SCAN', eventKey: 'SCENE_VALUE', ticket: 'TICKET' },
  },
  {
    title: 'LOCATION',
    spec: { type: 'event', event: 'LOCATION', latitude: '23.137466', longitude: '113.352425', precision: '119.385040' },
    parsed: { event: 'LOCATION', latitude: '23.137466', longitude: '113.352425', precision: '119.385040' },
  },
  { title: 'CLICK', spec: { type: 'event', event: 'CLICK', eventKey: 'V1001_GOOD' }, parsed: { event: 'CLICK', eventKey: 'V1001_GOOD' } },
  {
    title: 'VIEW',
    spec: { type: 'event', event: 'VIEW', eventKey: 'https://www.qq.com', menuId: '42' },
    parsed: { event: 'VIEW', eventKey: 'https://www.qq.com', menuId: '42' },
  },
  {
    title: 'view_miniprogram',
    spec: { type: 'event', event: 'view_miniprogram', eventKey: 'pages/index/index' },
    parsed: { event: 'view_miniprogram', eventKey: 'pages/index/index' },
  },
  {
    title: 'scancode_push',
    spec: { type: 'event', event: 'scancode_push', eventKey: '6', scanResult: 'https://qr' },
    parsed: { event: 'scancode_push', eventKey: '6', scanType: 'qrcode', scanResult: 'https://qr' },
  },
  {
    title: 'scancode_waitmsg',
    spec: { type: 'event', event: 'scancode_waitmsg', eventKey: '6', scanType: 'barcode', scanResult: '2' },
    parsed: { event: 'scancode_waitmsg', eventKey: '6', scanType: 'barcode', scanResult: '2' },
  },
  ...(['pic_sysphoto', 'pic_photo_or_album', 'pic_weixin'] as const).map((event) => ({
    title: event,
    spec: { type: 'event', event, eventKey: '6', picMd5Sums: ['5a75aaca956d97be686719218f275c6b', '1b5f7c23b5bf75682a53e7b6d163e185'] } as const,
    parsed: { event, eventKey: '6', count: 2, picMd5Sums: ['5a75aaca956d97be686719218f275c6b', '1b5f7c23b5bf75682a53e7b6d163e185'] },
  })),
  {
    title: 'location_select (label keeps its leading space)',
    spec: { type: 'event', event: 'location_select', eventKey: '6', latitude: '23', longitude: '113', label: ' 广州市海珠区' },
    parsed: { event: 'location_select', eventKey: '6', locationX: '23', locationY: '113', scale: '15', label: ' 广州市海珠区', poiname: '' },
  },
  {
    title: 'TEMPLATESENDJOBFINISH',
    spec: { type: 'event', event: 'TEMPLATESENDJOBFINISH', msgId: '3487542469355618313', status: 'failed:user block' },
    parsed: { event: 'TEMPLATESENDJOBFINISH', msgId: '3487542469355618313', status: 'failed:user block' },
  },
  {
    title: 'MASSSENDJOBFINISH',
    spec: { type: 'event', event: 'MASSSENDJOBFINISH', msgId: '1000001625', status: 'send success', totalCount: 3, filterCount: 2, sentCount: 2, errorCount: 0 },
    parsed: { event: 'MASSSENDJOBFINISH', msgId: '1000001625', status: 'send success', totalCount: 3, filterCount: 2, sentCount: 2, errorCount: 0 },
  },
  {
    title: 'PUBLISHJOBFINISH',
    spec: { type: 'event', event: 'PUBLISHJOBFINISH', publishId: '2247503051', publishStatus: '0', articleId: 'b5O2', articleUrls: ['https://a'] },
    parsed: { event: 'PUBLISHJOBFINISH', publishId: '2247503051', publishStatus: '0', articleId: 'b5O2', articles: [{ idx: '1', articleUrl: 'https://a' }] },
  },
  {
    title: 'subscribe_msg_popup_event',
    spec: { type: 'event', event: 'subscribe_msg_popup_event', list: [{ templateId: 'T1', subscribeStatusString: 'accept', popupScene: '2' }, { templateId: 'T2', subscribeStatusString: 'reject' }] },
    parsed: {
      event: 'subscribe_msg_popup_event',
      list: [{ templateId: 'T1', subscribeStatusString: 'accept', popupScene: '2' }, { templateId: 'T2', subscribeStatusString: 'reject' }],
    },
  },
  {
    title: 'kf_create_session',
    spec: { type: 'event', event: 'kf_create_session', kfAccount: 'test1@test' },
    parsed: { event: 'kf_create_session', kfAccount: 'test1@test' },
  },
  {
    title: 'kf_switch_session',
    spec: { type: 'event', event: 'kf_switch_session', fromKfAccount: 'a@t', toKfAccount: 'b@t' },
    parsed: { event: 'kf_switch_session', fromKfAccount: 'a@t', toKfAccount: 'b@t' },
  },
  {
    title: 'any other event',
    spec: { type: 'event', event: 'other', eventName: 'user_info_modified', eventKey: 'k' },
    parsed: { event: 'other', eventName: 'user_info_modified', eventKey: 'k' },
  },
];

describe('inbound XML builders', () => {
  it.each(CASES)('$title: parses back to the same fields', ({ spec, parsed }) => {
    const builder = createInboundXmlBuilder({ account: ACCOUNT, now: () => NOW });
    const built = builder.build(OPENID, spec);
    const message = parseInboundMessage(built.xml);
    expect(message).toMatchObject({ toUserName: ACCOUNT, fromUserName: OPENID, createTime: NOW / 1000, ...parsed });
    expect(built.createTime).toBe(NOW / 1000);
    if (spec.type === 'event') {
      expect(message.kind).toBe('event');
      expect(built.msgId).toBeUndefined();
      expect(built.xml).not.toContain('<MsgId>');
    } else {
      expect(message).toMatchObject({ kind: spec.type, msgId: built.msgId });
    }
  });

  it('gives every message a distinct MsgId above 2^53, as a decimal string', () => {
    const builder = createInboundXmlBuilder({ account: ACCOUNT });
    const ids = Array.from({ length: 1000 }, () => builder.build(OPENID, { type: 'text', content: 'x' }).msgId);
    expect(new Set(ids).size).toBe(1000);
    for (const id of ids) {
      expect(id).toMatch(/^\d+$/);
      expect(BigInt(id!)).toBeGreaterThan(BigInt(Number.MAX_SAFE_INTEGER));
      expect(BigInt(id!)).toBeLessThan(1n << 64n);
    }
  });

  it('gives two builders (two simulators, two processes) disjoint ids', () => {
    const a = createInboundXmlBuilder({ account: ACCOUNT });
    const b = createInboundXmlBuilder({ account: ACCOUNT });
    const idsA = new Set(Array.from({ length: 100 }, () => a.nextMsgId()));
    const idsB = Array.from({ length: 100 }, () => b.nextMsgId());
    expect(idsB.filter((id) => idsA.has(id))).toEqual([]);
  });

  it('writes location numbers bare and strings as CDATA, as WeChat does', () => {
    const { xml } = createInboundXmlBuilder({ account: ACCOUNT }).build(OPENID, { type: 'location', latitude: '23.1', longitude: '113.3', label: 'L' });
    expect(xml).toContain('<Location_X>23.1</Location_X>');
    expect(xml).toContain('<Label><![CDATA[L]]></Label>');
    expect(xml).toMatch(/<CreateTime>\d+<\/CreateTime>/);
  });

  it.each([
    [{ type: 'text', content: 'hi' }, 'message'],
    [{ type: 'image', picUrl: 'u' }, 'message'],
    [{ type: 'text', content: '满意', bizmsgmenuid: '101' }, 'event'],
    [{ type: 'event', event: 'subscribe' }, 'event'],
    [{ type: 'event', event: 'SCAN', eventKey: '1' }, 'event'],
    [{ type: 'event', event: 'CLICK', eventKey: 'K' }, 'event'],
    [{ type: 'event', event: 'scancode_waitmsg', eventKey: 'K', scanResult: 'r' }, 'event'],
    [{ type: 'event', event: 'VIEW', eventKey: 'https://x' }, undefined],
    [{ type: 'event', event: 'LOCATION', latitude: '1', longitude: '2' }, undefined],
    [{ type: 'event', event: 'unsubscribe' }, undefined],
  ] as const)('%j opens the %s window', (spec, trigger) => {
    expect(windowTriggerOf(spec as InboundSpec)).toBe(trigger);
  });
});

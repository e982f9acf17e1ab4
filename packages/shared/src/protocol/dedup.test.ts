import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadVectors } from '../test-support/vectors.js';
import { dedupKey, jobIdFor } from './dedup.js';
import type { InboundMessage } from './messages.js';
import { parseInboundMessage } from './inbound.js';

type XmlSample = { readonly id: string; readonly kind: string; readonly xml: string };
const vectors = loadVectors() as ReturnType<typeof loadVectors> & { readonly xml_samples: readonly XmlSample[] };
const inbound = vectors.xml_samples.filter((s) => s.kind !== 'reply');
const parsed = (id: string): InboundMessage => {
  const found = inbound.find((s) => s.id === id);
  if (found === undefined) throw new Error(`no xml_samples entry ${id}`);
  return parseInboundMessage(found.xml);
};

const base = { toUserName: 'gh_7f083739789a', fromUserName: 'oUser', createTime: 1700000000 } as const;
const text = (msgId: string, toUserName: string = base.toUserName): InboundMessage => ({
  kind: 'text',
  ...base,
  toUserName,
  msgId,
  content: 'hi',
});

/** BullMQ refuses integer-looking custom ids and uses ':' as its key separator. */
function expectBullMqSafe(id: string): void {
  expect(id).not.toMatch(/^\d+$/);
  expect(id).not.toContain(':');
  expect(id.length).toBeLessThanOrEqual(128);
}

describe('dedupKey', () => {
  it('is MsgId for messages', () => {
    expect(dedupKey(parsed('msg-text-real-bigint-msgid'))).toBe('6054768590064713728');
  });

  it('is FromUserName|CreateTime|Event|EventKey for events', () => {
    expect(dedupKey(parsed('evt-click'))).toBe('oia2TjuEGTNoeX76QEjQNrcURxG8|123456789|CLICK|EVENTKEY');
    expect(dedupKey(parsed('evt-unsubscribe'))).toBe('oia2TjuEGTNoeX76QEjQNrcURxG8|123456789|unsubscribe|');
  });

  it('uses MsgID in the EventKey place for job-result events', () => {
    expect(dedupKey(parsed('evt-templatesendjobfinish-success'))).toBe(
      'oia2TjuEGTNoeX76QEjQNrcURxG8|1395658920|TEMPLATESENDJOBFINISH|200163836',
    );
  });

  it('uses the event name as sent for other events', () => {
    const other: InboundMessage = { kind: 'event', ...base, event: 'other', eventName: 'debug_demo', raw: {} };
    expect(dedupKey(other)).toBe('oUser|1700000000|debug_demo|');
  });

  it('is FromUserName|CreateTime|MsgType for a message sent without MsgId', () => {
    expect(dedupKey(parsed('msg-text-no-msgid'))).toBe('oia2TjuEGTNoeX76QEjQNrcURxG8|1348831861|text');
    expect(dedupKey(parsed('msg-image-no-mediaid'))).toBe('oia2TjuEGTNoeX76QEjQNrcURxG8|1348831862|image');
    expect(dedupKey({ kind: 'shortvideo', ...base })).toBe('oUser|1700000000|shortvideo');
  });

  it('uses MsgId, else FromUserName|CreateTime|MsgType, for unknown types', () => {
    expect(dedupKey({ kind: 'unknown', ...base, msgType: 'x', msgId: '7', raw: {} })).toBe('7');
    expect(dedupKey({ kind: 'unknown', ...base, msgType: 'x', raw: {} })).toBe('oUser|1700000000|x');
  });
});

describe('jobIdFor', () => {
  it('is stable: the same push (a retry) gets the same id', () => {
    for (const s of inbound) {
      expect(jobIdFor(parseInboundMessage(s.xml)), s.id).toBe(jobIdFor(parseInboundMessage(s.xml)));
    }
  });

  it('is msg-<account>-<MsgId> for messages', () => {
    expect(jobIdFor(parsed('msg-text'))).toBe('msg-gh_7f083739789a-1234567890123456');
  });

  it('differs for different MsgIds and for different accounts', () => {
    expect(jobIdFor(text('1'))).not.toBe(jobIdFor(text('2')));
    expect(jobIdFor(text('1'))).not.toBe(jobIdFor(text('1', 'gh_other')));
  });

  it('differs for two events of one user in the same second', () => {
    const subscribe: InboundMessage = { kind: 'event', ...base, event: 'subscribe' };
    const location: InboundMessage = { kind: 'event', ...base, event: 'LOCATION', latitude: '1', longitude: '2', precision: '3' };
    expect(dedupKey(subscribe)).not.toBe(dedupKey(location));
    expect(jobIdFor(subscribe)).not.toBe(jobIdFor(location));
    expect(jobIdFor(subscribe)).toMatch(/^evt-[0-9a-f]{40}$/);
  });

  it('differs for two menu clicks with different keys in the same second', () => {
    const click = (eventKey: string): InboundMessage => ({ kind: 'event', ...base, event: 'CLICK', eventKey });
    expect(jobIdFor(click('A'))).not.toBe(jobIdFor(click('B')));
  });

  it('is msg-<sha1 hex> for a message without MsgId: the same for a retry, apart by type, sender, second and account', () => {
    const noId = (over: Partial<Record<'kind' | 'fromUserName' | 'toUserName', string>> & { createTime?: number } = {}): InboundMessage =>
      ({ kind: 'text', ...base, content: 'hi', ...over }) as InboundMessage;
    const id = jobIdFor(noId());
    expect(id).toMatch(/^msg-[0-9a-f]{40}$/);
    expect(jobIdFor(noId())).toBe(id);
    expect(jobIdFor(parsed('msg-text-no-msgid'))).toBe(jobIdFor(parsed('msg-text-no-msgid')));
    const others = [noId({ kind: 'image' }), noId({ fromUserName: 'oOther' }), noId({ createTime: base.createTime + 1 }), noId({ toUserName: 'gh_other' })];
    for (const other of others) expect(jobIdFor(other), JSON.stringify(other)).not.toBe(id);
    expectBullMqSafe(id);
  });

  it('hashes an account id that is not a plain gh_ id', () => {
    const id = jobIdFor(text('1', 'gh:evil-account'));
    expect(id).toMatch(/^msg-h[0-9a-f]{16}-1$/);
  });

  it('is never all digits, never contains ":", and is bounded, for every vector', () => {
    for (const s of inbound) expectBullMqSafe(jobIdFor(parseInboundMessage(s.xml)));
  });

  it('stays BullMQ-safe whatever the user-controlled fields hold', () => {
    const anyText = fc.string({ unit: 'binary', maxLength: 200 });
    fc.assert(
      fc.property(anyText, anyText, anyText, anyText, fc.nat(), (to, from, key, msgId, createTime) => {
        expectBullMqSafe(jobIdFor({ kind: 'event', toUserName: to, fromUserName: from, createTime, event: 'CLICK', eventKey: key }));
        expectBullMqSafe(jobIdFor({ kind: 'unknown', toUserName: to, fromUserName: from, createTime, msgType: key, msgId, raw: {} }));
        expectBullMqSafe(jobIdFor({ ...text('123', to), fromUserName: from }));
        expectBullMqSafe(jobIdFor({ kind: 'text', toUserName: to, fromUserName: from, createTime, content: key }));
      }),
    );
  });
});

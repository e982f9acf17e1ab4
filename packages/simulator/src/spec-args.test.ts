import { parseInboundMessage } from '@wxrelay/shared';
import { describe, expect, it } from 'vitest';
import { createInboundXmlBuilder } from './inbound-xml.js';
import { parseSpecArgs, SpecArgsError } from './spec-args.js';

const builder = createInboundXmlBuilder({ account: 'gh_0123456789ab' });

describe('parseSpecArgs', () => {
  it.each([
    [['text', '你好', '世界'], { kind: 'text', content: '你好 世界' }],
    [['image', 'https://x/a.jpg'], { kind: 'image', picUrl: 'https://x/a.jpg' }],
    [['voice'], { kind: 'voice', format: 'amr' }],
    [['voice', 'hello'], { kind: 'voice', recognition: 'hello' }],
    [['video'], { kind: 'video' }],
    [['shortvideo'], { kind: 'shortvideo' }],
    [['location', '23.1', '113.3'], { kind: 'location', locationX: '23.1', locationY: '113.3', label: '' }],
    [['link', 'https://x', 'A', 'title'], { kind: 'link', url: 'https://x', title: 'A title' }],
    [['subscribe'], { event: 'subscribe', eventKey: '' }],
    [['follow', 'promo'], { event: 'subscribe', eventKey: 'qrscene_promo', scene: 'promo' }],
    [['unsubscribe'], { event: 'unsubscribe' }],
    [['scan', '7'], { event: 'SCAN', eventKey: '7' }],
    [['click', 'K'], { event: 'CLICK', eventKey: 'K' }],
    [['view', 'https://v'], { event: 'VIEW', eventKey: 'https://v' }],
    [['scancode', 'K', 'R'], { event: 'scancode_push', eventKey: 'K', scanResult: 'R' }],
    [['scancode-wait', 'K', 'R'], { event: 'scancode_waitmsg', eventKey: 'K', scanResult: 'R' }],
    [['report-location', '1.5', '2.5'], { event: 'LOCATION', latitude: '1.5', longitude: '2.5' }],
    [['event', 'user_info_modified'], { event: 'other', eventName: 'user_info_modified' }],
  ])('%j builds a push that parses back', (words, parsed) => {
    expect(parseInboundMessage(builder.build('oUser', parseSpecArgs(words)).xml)).toMatchObject(parsed);
  });

  it.each([[['text']], [['click']], [['location', '1']], [['scancode', 'K']], [['nope']], [[]]])('%j is a usage error', (words) => {
    expect(() => parseSpecArgs(words)).toThrow(SpecArgsError);
  });
});

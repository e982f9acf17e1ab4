import { describe, expect, it } from 'vitest';
import { utf8Bytes } from '../src/delivery/chunk-text.js';
import { passivePages, singlePage, toPassive } from '../src/delivery/passive-pages.js';
import { reply } from '../src/wechat/messages.js';

const opts = { pageBytes: 2047, moreMarker: '（回复任意文字继续）' };
const parse = (pages: readonly string[]) => pages.map((p) => JSON.parse(p) as { kind: string; content?: string });

describe('passive pages', () => {
  it('a short text is one page, without the marker', () => {
    expect(parse(passivePages([reply.text('hi')], opts).pages)).toEqual([{ kind: 'text', content: 'hi' }]);
  });

  it('a long text is paged within the limit, the marker ending every page but the last', () => {
    const text = '长'.repeat(2000); // 6,000 bytes
    const pages = parse(passivePages([reply.text(text)], opts).pages);
    expect(pages.length).toBe(3);
    for (const p of pages) expect(utf8Bytes(p.content ?? '')).toBeLessThanOrEqual(2047);
    expect(pages.slice(0, -1).every((p) => p.content?.endsWith(`\n${opts.moreMarker}`))).toBe(true);
    expect(pages.at(-1)?.content?.includes(opts.moreMarker)).toBe(false);
    expect(pages.map((p) => p.content?.replace(`\n${opts.moreMarker}`, '')).join('')).toBe(text);
  });

  it('several messages are several pages; a text that fits whole as the last page keeps its room', () => {
    const last = 'x'.repeat(2040);
    const pages = parse(passivePages([reply.image('MEDIA'), reply.text(last)], opts).pages);
    expect(pages).toEqual([{ kind: 'image', mediaId: 'MEDIA' }, { kind: 'text', content: last }]);
  });

  it('types a passive reply cannot carry are left out and counted; a menu becomes its text', () => {
    const out = passivePages([reply.mpnews('M'), reply.msgmenu({ head: '选一个', options: [{ id: '1', content: '甲' }], tail: '谢谢' })], opts);
    expect(out.dropped).toBe(1);
    expect(parse(out.pages)).toEqual([{ kind: 'text', content: '选一个\n甲\n谢谢' }]);
    expect(toPassive(reply.wxcard('C'))).toBeUndefined();
  });

  it('auto mode: one page when the answer fits one passive reply, else none (the API delivers it whole)', () => {
    expect(singlePage([], 2047)).toEqual([]);
    expect(singlePage([reply.text('pong')], 2047)).toEqual([JSON.stringify({ kind: 'text', content: 'pong' })]);
    expect(singlePage([reply.text('a'), reply.text('b')], 2047)).toBeUndefined();
    expect(singlePage([reply.text('x'.repeat(2048))], 2047)).toBeUndefined();
    expect(singlePage([reply.mpnews('M')], 2047)).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { DEFAULT_CUT_NOTICE, splitText, utf8Bytes } from '../src/delivery/chunk-text.js';
import { fitReplies } from '../src/delivery/reply-plan.js';
import { reply } from '../src/wechat/messages.js';

const para = (n: number, s: string) => Array.from({ length: n }, () => s).join('');

describe('splitText', () => {
  it('keeps a short text whole', () => {
    expect(splitText('你好，世界')).toEqual(['你好，世界']);
  });

  it.each([
    { title: 'ASCII words', text: para(400, 'lorem ipsum dolor sit amet. ') },
    { title: 'Chinese sentences (3 bytes a character)', text: para(300, '这是一个很长的句子，用来测试分段。') },
    { title: 'emoji (4 bytes, and ZWJ sequences)', text: para(600, '👨‍👩‍👧😀') },
    { title: 'no boundary at all', text: para(5000, 'x') },
    { title: 'mixed paragraphs', text: [para(50, '第一段内容。'), para(200, 'Second paragraph here. '), para(100, '第三段！')].join('\n\n') },
  ])('$title: every chunk ≤ 2048 bytes, nothing lost but whitespace', ({ text }) => {
    const chunks = splitText(text, 2048);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) {
      expect(utf8Bytes(c)).toBeLessThanOrEqual(2048);
      expect(c).not.toBe('');
      expect(/\p{Cs}/u.test(c)).toBe(false); // no lone surrogate
    }
    expect(chunks.join('').replace(/\s/g, '')).toBe(text.replace(/\s/g, ''));
  });

  it('never splits a ZWJ emoji sequence', () => {
    const family = '👨‍👩‍👧';
    const chunks = splitText(para(300, family), 100);
    for (const c of chunks) expect(c.replaceAll(family, '')).toBe('');
  });

  it('prefers a paragraph break, then a sentence end', () => {
    const first = para(30, '甲');
    const text = `${first}\n\n${para(30, '乙')}。${para(30, '丙')}`;
    expect(splitText(text, 150)[0]).toBe(first);
    expect(splitText(`${para(30, '乙')}。${para(30, '丙')}`, 150)[0]).toBe(`${para(30, '乙')}。`);
  });

  it('does not waste a chunk on a boundary near its start', () => {
    const text = `短。${para(100, '长')}`;
    expect(utf8Bytes(splitText(text, 150)[0]!)).toBeGreaterThan(75);
  });
});

/** One text answer planned within `maxParts` messages: the texts of the parts (was `planTextParts`). */
function planText(text: string, opts: { maxParts: number; maxBytes?: number }): { parts: string[]; cut: boolean } {
  const { parts, cut } = fitReplies([reply.text(text)], opts.maxParts, opts.maxBytes === undefined ? {} : { maxBytes: opts.maxBytes });
  return { parts: parts.map((p) => (p.msgtype === 'text' ? p.text.content : '')), cut };
}

describe('fitReplies for one text answer', () => {
  const long = para(60, '这是一个很长的回答，需要分成好几条消息发送。'); // ~3960 bytes

  it('sends everything when the quota allows', () => {
    const { parts, cut } = planText(long, { maxParts: 5, maxBytes: 2048 });
    expect(cut).toBe(false);
    expect(parts.length).toBe(2);
  });

  it('ends the last allowed chunk with a notice when the answer needs more than the quota', () => {
    const { parts, cut } = planText(para(4, long), { maxParts: 3, maxBytes: 2048 });
    expect(cut).toBe(true);
    expect(parts).toHaveLength(3);
    expect(parts[2]!.endsWith(DEFAULT_CUT_NOTICE)).toBe(true);
    for (const p of parts) expect(utf8Bytes(p)).toBeLessThanOrEqual(2048);
  });

  it('plans nothing when no quota is left', () => {
    expect(planText(long, { maxParts: 0 })).toEqual({ parts: [], cut: true });
  });
});

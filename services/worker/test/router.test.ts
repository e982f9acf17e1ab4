import { describe, expect, it } from 'vitest';
import { createRouter, type HandlerContext, type InboundMessage } from '../src/replies/router.js';
import { parseReplyRules } from '../src/replies/rules.js';
import { createBuiltinRoutes, formatMessageDate, LLM_APOLOGY } from '../src/replies/builtin.js';
import { LlmError, type LlmClient } from '../src/replies/llm.js';
import type { ConversationMemory } from '../src/replies/memory.js';
import { captureLogger } from './support.js';

const base = { toUserName: 'gh_1', fromUserName: 'openid-1', createTime: 1_700_000_000 };
const text = (content: string): InboundMessage => ({ ...base, kind: 'text', msgId: '1', content });
const subscribe = (eventKey?: string): InboundMessage => ({ ...base, kind: 'event', event: 'subscribe', ...(eventKey === undefined ? {} : { eventKey }) });
const click = (eventKey: string): InboundMessage => ({ ...base, kind: 'event', event: 'CLICK', eventKey });

function ctx(message: InboundMessage, lastAttempt = false): HandlerContext {
  return { message, messageKey: 'k', log: captureLogger('silent').log, signal: new AbortController().signal, lastAttempt };
}

const RULES_YAML = `
rules:
  - name: help
    match: { msgType: text, content: 帮助 }
    reply: 发送任意文字和我聊天
  - match: { content: { regex: '^price', flags: i } }
    reply: { msgtype: news, news: { articles: [{ title: 价格, url: 'https://example.com/p' }] } }
  - match: { event: CLICK, eventKey: MENU_NEWS }
    reply:
      - { msgtype: mpnewsarticle, mpnewsarticle: { article_id: ART1 } }
      - { msgtype: text, text: { content: 看看最新文章 } }
`;

describe('reply rules + built-in routes', () => {
  const router = createRouter([...parseReplyRules(RULES_YAML), ...createBuiltinRoutes({ welcomeMessage: 'Hi~ 终于等到你' })]);
  const answer = async (m: InboundMessage) => {
    const route = router.route(m);
    return route === undefined ? undefined : { name: route.name, replies: await route.handler(ctx(m)) };
  };

  it.each([
    { title: 'exact content', message: text(' 帮助 '), name: 'help', first: { msgtype: 'text', text: { content: '发送任意文字和我聊天' } } },
    { title: 'regex content', message: text('PRICE list'), name: 'rule 2', first: { msgtype: 'news' } },
    { title: 'menu click by key', message: click('MENU_NEWS'), name: 'rule 3', first: { msgtype: 'mpnewsarticle' } },
    { title: 'subscribe', message: subscribe(), name: 'welcome', first: { msgtype: 'text', text: { content: 'Hi~ 终于等到你' } } },
    { title: 'QR-scene subscribe', message: subscribe('qrscene_42'), name: 'welcome', first: { msgtype: 'text', text: { content: 'Hi~ 终于等到你' } } },
    { title: 'image', message: { ...base, kind: 'image', msgId: '1', picUrl: 'p', mediaId: 'm' } as InboundMessage, name: 'image', first: { msgtype: 'text' } },
    { title: 'location', message: { ...base, kind: 'location', msgId: '1', locationX: '23.1', locationY: '113.3', scale: '20', label: '广州塔' } as InboundMessage, name: 'location', first: { text: { content: '收到你的位置：广州塔 📍' } } },
    { title: 'file', message: { ...base, kind: 'file', msgId: '1', title: 'a.pdf', description: '', fileKey: 'k', fileMd5: 'm', fileTotalLen: '1' } as InboundMessage, name: 'file', first: { msgtype: 'text' } },
    { title: 'voice with recognition → chat', message: { ...base, kind: 'voice', msgId: '1', mediaId: 'm', format: 'amr', recognition: '你好' } as InboundMessage, name: 'echo', first: { msgtype: 'text' } },
    { title: 'voice without recognition', message: { ...base, kind: 'voice', msgId: '1', mediaId: 'm', format: 'amr' } as InboundMessage, name: 'voice', first: { msgtype: 'text' } },
  ])('$title → $name', async ({ message, name, first }) => {
    const got = await answer(message);
    expect(got?.name).toBe(name);
    expect(got?.replies[0]).toMatchObject(first);
  });

  it('echoes text with the message date when there is no LLM', async () => {
    const got = await answer(text('在吗'));
    expect(got?.replies).toEqual([{ msgtype: 'text', text: { content: '2023-11-15 06:13:20\n你说：在吗' } }]);
  });

  it('writes the date in China time, as Intl does for Asia/Shanghai (every day from 1992 to 2100)', () => {
    const shanghai = new Intl.DateTimeFormat('sv-SE', { timeZone: 'Asia/Shanghai', dateStyle: 'short', timeStyle: 'medium' });
    // China has kept UTC+8 without daylight saving since 1991; one instant a day, each at a different second.
    for (let t = Date.UTC(1992, 0, 1) / 1000; t < Date.UTC(2100, 0, 1) / 1000; t += 86_400 + 37) {
      const message = { ...text('x'), createTime: t };
      expect(formatMessageDate(message)).toBe(shanghai.format(new Date(t * 1000)));
    }
  });

  it('acknowledges other events and unknown types without a reply', () => {
    expect(router.route({ ...base, kind: 'event', event: 'unsubscribe' })).toBeUndefined();
    expect(router.route({ ...base, kind: 'event', event: 'VIEW', eventKey: 'https://x' })).toBeUndefined();
    expect(router.route({ ...base, kind: 'unknown', msgType: 'miniprogrampage', raw: {} })).toBeUndefined();
  });

  it('a click with several replies answers with all of them', async () => {
    expect((await answer(click('MENU_NEWS')))?.replies).toHaveLength(2);
  });
});

describe('parseReplyRules', () => {
  it('reads JSON too', () => {
    expect(parseReplyRules('[{"match":{"event":"SCAN"},"reply":"欢迎回来"}]')).toHaveLength(1);
  });

  it.each([
    { title: 'not YAML', source: 'rules: [' },
    { title: 'unknown msgtype', source: 'rules: [{ match: { content: x }, reply: { msgtype: sticker, sticker: {} } }]' },
    { title: 'empty match', source: 'rules: [{ match: {}, reply: hi }]' },
    { title: 'two news articles', source: "rules: [{ match: { content: x }, reply: { msgtype: news, news: { articles: [{title: a, url: u}, {title: b, url: u}] } } }]" },
    { title: 'bad regex', source: "rules: [{ match: { content: { regex: '(' } }, reply: hi }]" },
  ])('refuses $title with WX_ERR_CONFIG', ({ source }) => {
    expect(() => parseReplyRules(source, 'rules.yaml')).toThrow(expect.objectContaining({ code: 'WX_ERR_CONFIG', message: expect.stringContaining('rules.yaml') }));
  });
});

describe('chatbot route', () => {
  function memory(): ConversationMemory & { saved: [string, string][] } {
    const saved: [string, string][] = [];
    return {
      saved,
      history: () => Promise.resolve(saved.flatMap(([u, a]) => [{ role: 'user' as const, content: u }, { role: 'assistant' as const, content: a }])),
      append: (_o, u, a) => {
        saved.push([u, a]);
        return Promise.resolve();
      },
    };
  }

  it('asks the model with the system prompt and history, remembers the exchange', async () => {
    const seen: unknown[] = [];
    const client: LlmClient = { complete: (messages) => (seen.push(messages), Promise.resolve(`answer ${seen.length}`)) };
    const mem = memory();
    const router = createRouter(createBuiltinRoutes({ welcomeMessage: 'hi', chatbot: { client, memory: mem, systemPrompt: 'be brief' } }));
    const route = router.route(text('q1'))!;
    expect(route.slow).toBe(true);
    await route.handler(ctx(text('q1')));
    expect(await route.handler(ctx(text('q2')))).toEqual([{ msgtype: 'text', text: { content: 'answer 2' } }]);
    expect(seen[1]).toEqual([
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'q1' },
      { role: 'assistant', content: 'answer 1' },
      { role: 'user', content: 'q2' },
    ]);
  });

  it('throws a transient LLM failure (the job retries), apologises on the last attempt', async () => {
    const client: LlmClient = { complete: () => Promise.reject(new LlmError('LLM: timed out', true)) };
    const route = createRouter(createBuiltinRoutes({ welcomeMessage: 'hi', chatbot: { client, memory: memory() } })).route(text('q'))!;
    await expect(route.handler(ctx(text('q')))).rejects.toBeInstanceOf(LlmError);
    expect(await route.handler(ctx(text('q'), true))).toEqual([{ msgtype: 'text', text: { content: LLM_APOLOGY } }]);
  });
});

import { reply } from '../wechat/messages.js';
import type { ConversationMemory } from './memory.js';
import { LlmError, type ChatMessage, type LlmClient } from './llm.js';
import { textOf, type HandlerContext, type InboundMessage, type Route } from './router.js';

export interface ChatbotDeps {
  readonly client: LlmClient;
  readonly memory: ConversationMemory;
  readonly systemPrompt?: string;
}

export interface BuiltinRoutesDeps {
  readonly welcomeMessage: string;
  /** Unset: text is echoed with the date (a working demo without an LLM). */
  readonly chatbot?: ChatbotDeps;
}

export const LLM_APOLOGY = '抱歉，我暂时无法回答，请稍后再试。';

/** China Standard Time: UTC+8 all year (no daylight saving since 1991). */
const CHINA_OFFSET_MS = 8 * 3600 * 1000;

/**
 * `2024-05-01 08:30:00` in China time, from the message's CreateTime (stable across retries).
 * Shifted by the fixed offset and cut from the ISO form rather than formatted with
 * `Intl.DateTimeFormat#format`, which showed in the worker's profile (bench/analysis.md).
 */
export function formatMessageDate(message: InboundMessage): string {
  const iso = new Date(message.createTime * 1000 + CHINA_OFFSET_MS).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}`;
}

function echo(ctx: HandlerContext, text: string) {
  return Promise.resolve([reply.text(`${formatMessageDate(ctx.message)}\n你说：${text}`)]);
}

async function chat(deps: ChatbotDeps, ctx: HandlerContext, text: string) {
  const openid = ctx.message.fromUserName;
  const history = await deps.memory.history(openid);
  const messages: ChatMessage[] = [
    ...(deps.systemPrompt === undefined ? [] : [{ role: 'system' as const, content: deps.systemPrompt }]),
    ...history,
    { role: 'user', content: text },
  ];
  let answer: string;
  try {
    answer = await deps.client.complete(messages, ctx.signal);
  } catch (err) {
    if (err instanceof LlmError && ctx.lastAttempt) {
      ctx.log.error({ err }, 'LLM failed on the last attempt; answering with an apology');
      return [reply.text(LLM_APOLOGY)];
    }
    throw err;
  }
  await deps.memory.append(openid, text, answer);
  return [reply.text(answer)];
}

const text = (content: string) => () => Promise.resolve([reply.text(content)]);

/**
 * The built-in handlers, matched after the reply rules: welcome on follow (QR follows too), the
 * chatbot (or echo) for text and recognised voice, a short acknowledgement for other messages.
 * Other events and unknown types match nothing: they are acknowledged without a reply.
 */
export function createBuiltinRoutes(deps: BuiltinRoutesDeps): Route[] {
  const { chatbot } = deps;
  return [
    { name: 'welcome', match: { msgType: 'event', event: 'subscribe' }, handler: text(deps.welcomeMessage) },
    {
      name: chatbot === undefined ? 'echo' : 'chatbot',
      match: (m) => textOf(m) !== undefined,
      slow: chatbot !== undefined,
      handler: (ctx) => {
        const said = textOf(ctx.message) ?? '';
        return chatbot === undefined ? echo(ctx, said) : chat(chatbot, ctx, said);
      },
    },
    { name: 'voice', match: { msgType: 'voice' }, handler: text('收到你的语音啦。暂时听不懂语音，发文字给我吧～') },
    { name: 'image', match: { msgType: 'image' }, handler: text('收到你的图片啦 📷') },
    { name: 'video', match: { msgType: ['video', 'shortvideo'] }, handler: text('收到你的视频啦 🎬') },
    {
      name: 'location',
      match: { msgType: 'location' },
      handler: (ctx) => {
        const m = ctx.message;
        const where = m.kind === 'location' ? (m.label !== undefined && m.label.trim() !== '' ? m.label : `${m.locationX}, ${m.locationY}`) : '';
        return Promise.resolve([reply.text(`收到你的位置：${where} 📍`)]);
      },
    },
    {
      name: 'link',
      match: { msgType: 'link' },
      handler: (ctx) => Promise.resolve([reply.text(ctx.message.kind === 'link' ? `收到链接：${ctx.message.title ?? ctx.message.url}` : '收到链接')]),
    },
    { name: 'file', match: { msgType: 'file' }, handler: text('收到你的文件啦 📎') },
  ];
}

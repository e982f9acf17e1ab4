import type { PassiveReply } from '@wxrelay/shared';
import type { CallbackAttempt } from './callback-client.js';
import type { CallbackEvent, SimEvent } from './sim-events.js';

type Body = Record<string, unknown>;

function part(body: Body): Body {
  const value = body[String(body['msgtype'])];
  return typeof value === 'object' && value !== null ? (value as Body) : {};
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function fields(values: Record<string, unknown>): string {
  return Object.entries(values)
    .filter(([, v]) => typeof v === 'string' && v !== '')
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ');
}

/** One customer-service body (custom/send JSON, docs/wechat-protocol.md §9.1) as terminal text. */
export function formatCustomMessage(body: Body): string {
  const msgtype = str(body['msgtype']);
  const p = part(body);
  switch (msgtype) {
    case 'text':
      return str(p['content']);
    case 'news': {
      const articles = Array.isArray(p['articles']) ? (p['articles'] as Body[]) : [];
      return articles
        .map((a) => `[news] ${str(a['title'])}${a['description'] ? ` — ${str(a['description'])}` : ''}${a['url'] ? ` <${str(a['url'])}>` : ''}`)
        .join('\n');
    }
    case 'msgmenu': {
      const list = Array.isArray(p['list']) ? (p['list'] as Body[]) : [];
      return [str(p['head_content']), ...list.map((item) => `[${str(item['id'])}] ${str(item['content'])}`), str(p['tail_content'])]
        .filter((line) => line !== '')
        .join('\n');
    }
    default:
      return `[${msgtype}] ${fields(p)}`.trimEnd();
  }
}

/** A passive reply (docs/wechat-protocol.md §7) as terminal text, through the customer-service shapes. */
export function formatPassiveReply(reply: PassiveReply): string {
  switch (reply.kind) {
    case 'text':
      return reply.content;
    case 'news':
      return formatCustomMessage({ msgtype: 'news', news: { articles: reply.articles } });
    case 'transfer_customer_service':
      return `[transfer_customer_service]${reply.kfAccount === undefined ? '' : ` ${reply.kfAccount}`}`;
    case 'image':
    case 'voice':
    case 'video':
    case 'music': {
      const { kind, ...rest } = reply;
      return `[${kind}] ${fields(rest)}`.trimEnd();
    }
  }
}

/** One of WeChat's tries, e.g. `try 1 (+0.0 s): cut after 5.0 s (no answer within 5000 ms)`. */
export function formatAttempt(attempt: CallbackAttempt): string {
  const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
  const head = `try ${attempt.attempt} (+${seconds(attempt.startedMs)})`;
  switch (attempt.ended) {
    case 'ack':
      return `${head}: success`;
    case 'reply':
      return `${head}: passive reply`;
    case 'cut':
      return `${head}: cut after ${seconds(attempt.durationMs)} (${attempt.error ?? 'no answer'})`;
    case 'network':
    case 'status':
    case 'invalid':
      return `${head}: ${attempt.error ?? attempt.ended}`;
  }
}

/**
 * The gateway's answer to a push, e.g. `gateway: success (HTTP 200, 1 try)`; a passive reply says
 * which try got it and whether the gateway labelled it a placeholder, and after more than one try
 * each try is listed.
 */
export function formatCallback(event: CallbackEvent): string {
  const tries = `${event.tries} ${event.tries === 1 ? 'try' : 'tries'}`;
  const status = event.status === undefined ? 'no HTTP answer' : `HTTP ${event.status}`;
  const history = event.tries > 1 ? `\n${event.attempts.map((a) => `  ${formatAttempt(a)}`).join('\n')}` : '';
  switch (event.outcome) {
    case 'ack':
      return `gateway: success (${status}, ${tries})${history}`;
    case 'reply': {
      const attempt = event.replyAttempt ?? event.tries;
      const placeholder = event.replyKind === 'placeholder';
      const what = placeholder ? 'placeholder' : 'passive reply';
      const label = `${placeholder ? 'placeholder' : 'passive'} · attempt ${attempt}`;
      const note = placeholder ? ' — the answer waits for the user\'s next message' : '';
      const text = event.reply === undefined ? '' : formatPassiveReply(event.reply.reply);
      return `gateway: ${what} on attempt ${attempt} (${status}, ${tries})${note}${history}\n${indent(`bot (${label}): ${text}`)}`;
    }
    case 'failed':
      return `gateway: FAILED after ${tries} (${event.error ?? status}) — the user sees 该公众号暂时无法提供服务，请稍后再试${history}`;
  }
}

function indent(text: string): string {
  return text.replaceAll('\n', '\n  ');
}

/** A worker's action for a user as a terminal line, or undefined for events the CLI leaves out. */
export function formatWorkerEvent(event: SimEvent): string | undefined {
  switch (event.type) {
    case 'delivery':
      return indent(`bot: ${formatCustomMessage(event.body)}`);
    case 'typing':
      return event.command === 'Typing' ? 'bot is typing…' : undefined;
    case 'unauthorized':
      // A refused typing call is left out: the refused message says it all.
      return event.path === '/cgi-bin/message/custom/send'
        ? `bot's customer-service message${event.what === undefined ? '' : ` (${event.what})`} refused: 48001 api unauthorized (unverified account)`
        : undefined;
    case 'inbound':
    case 'attempt':
    case 'callback':
      return undefined;
  }
}

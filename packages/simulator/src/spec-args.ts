import type { InboundSpec } from './inbound-xml.js';

/** A command line that names no known push, or lacks an argument. The message is the usage line. */
export class SpecArgsError extends Error {
  override readonly name = 'SpecArgsError';
}

/** Every push the CLI can send, with its arguments ([optional]). */
export const SPEC_USAGE: readonly string[] = [
  'text CONTENT',
  'image URL',
  'voice [RECOGNITION]',
  'video | shortvideo',
  'location LAT LNG [LABEL]',
  'link URL [TITLE]',
  'subscribe [SCENE]',
  'unsubscribe',
  'scan SCENE',
  'click KEY',
  'view URL',
  'scancode KEY RESULT | scancode-wait KEY RESULT',
  'report-location LAT LNG',
  'event NAME [KEY]',
];

function need(words: readonly string[], count: number, usage: string): void {
  if (words.length < count) throw new SpecArgsError(`usage: ${usage}`);
}

/**
 * The push a CLI command line describes, e.g. `['text', '你好']`, `['click', 'MENU_HELP']`,
 * `['location', '23.13', '113.35', 'Canton Tower']`.
 *
 * @throws {@link SpecArgsError} for an unknown type or a missing argument.
 */
export function parseSpecArgs(words: readonly string[]): InboundSpec {
  const [type = '', ...args] = words;
  const [a, b, c] = args;
  switch (type) {
    case 'text':
      need(args, 1, 'text CONTENT');
      return { type: 'text', content: args.join(' ') };
    case 'image':
      need(args, 1, 'image URL');
      return { type: 'image', picUrl: a! };
    case 'voice':
      return args.length === 0 ? { type: 'voice' } : { type: 'voice', recognition: args.join(' ') };
    case 'video':
    case 'shortvideo':
      return { type };
    case 'location':
      need(args, 2, 'location LAT LNG [LABEL]');
      return { type: 'location', latitude: a!, longitude: b!, ...(c === undefined ? {} : { label: args.slice(2).join(' ') }) };
    case 'link':
      need(args, 1, 'link URL [TITLE]');
      return { type: 'link', url: a!, ...(b === undefined ? {} : { title: args.slice(1).join(' ') }) };
    case 'subscribe':
    case 'follow':
      return a === undefined ? { type: 'event', event: 'subscribe' } : { type: 'event', event: 'subscribe', scene: a };
    case 'unsubscribe':
    case 'unfollow':
      return { type: 'event', event: 'unsubscribe' };
    case 'scan':
      need(args, 1, 'scan SCENE');
      return { type: 'event', event: 'SCAN', eventKey: a! };
    case 'click':
      need(args, 1, 'click KEY');
      return { type: 'event', event: 'CLICK', eventKey: a! };
    case 'view':
      need(args, 1, 'view URL');
      return { type: 'event', event: 'VIEW', eventKey: a! };
    case 'scancode':
    case 'scancode-wait':
      need(args, 2, `${type} KEY RESULT`);
      return { type: 'event', event: type === 'scancode' ? 'scancode_push' : 'scancode_waitmsg', eventKey: a!, scanResult: b! };
    case 'report-location':
      need(args, 2, 'report-location LAT LNG');
      return { type: 'event', event: 'LOCATION', latitude: a!, longitude: b! };
    case 'event':
      need(args, 1, 'event NAME [KEY]');
      return { type: 'event', event: 'other', eventName: a!, ...(b === undefined ? {} : { eventKey: b }) };
    default:
      throw new SpecArgsError(`unknown message type ${JSON.stringify(type)}; one of:\n  ${SPEC_USAGE.join('\n  ')}`);
  }
}

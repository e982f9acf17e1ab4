/**
 * De-duplication of WeChat's retries (up to 4 deliveries of one push, same body).
 *
 * Doc: "消息排重" on the receiving-messages page
 * https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html
 * (docs/wechat-protocol.md §3.3).
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type { InboundMessage } from './messages.js';

/**
 * The de-duplication key of a push, as the doc defines it (it does not name the account; see
 * {@link jobIdFor} for a key that does):
 *
 * - messages: `MsgId`, else `FromUserName|CreateTime|MsgType` (a message WeChat sent without one);
 * - events: `FromUserName|CreateTime|Event|EventKey` (the doc's FromUserName+CreateTime, plus Event
 *   and EventKey because one user can trigger two events in one second, e.g. `subscribe` then
 *   `LOCATION`). Events that carry a `MsgID` instead of an EventKey (template/mass-send results,
 *   which can arrive several per second for one user) use that `MsgID` in the last place;
 * - unknown `MsgType`: `MsgId` when present, else `FromUserName|CreateTime|MsgType`.
 *
 * docs/wechat-protocol.md §3.3.
 */
export function dedupKey(msg: InboundMessage): string {
  if (msg.kind === 'event') {
    const name = msg.event === 'other' ? msg.eventName : msg.event;
    const last = 'eventKey' in msg ? msg.eventKey : 'msgId' in msg ? msg.msgId : undefined;
    return `${msg.fromUserName}|${msg.createTime}|${name}|${last ?? ''}`;
  }
  const msgType = msg.kind === 'unknown' ? msg.msgType : msg.kind;
  return msg.msgId ?? `${msg.fromUserName}|${msg.createTime}|${msgType}`;
}

const MSG_ID_RE = /^\d{1,20}$/;
const ACCOUNT_RE = /^[A-Za-z0-9_]{1,32}$/;

function sha1Hex(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

/** `gh_…` ids are used as they are; anything else (plain mode bodies are not authenticated) is hashed. */
function accountPart(toUserName: string): string {
  return ACCOUNT_RE.test(toUserName) ? toUserName : `h${sha1Hex(toUserName).slice(0, 16)}`;
}

/**
 * A BullMQ job id for the push, equal for every retry of it: `msg-<account>-<MsgId>` for anything
 * with a numeric `MsgId`; else `evt-<sha1 hex>` for events, `msg-<sha1 hex>` for messages sent
 * without a `MsgId` and `unk-<sha1 hex>` for unknown types without one, where the hash covers the
 * account and {@link dedupKey}.
 *
 * The id never consists of digits only and never contains `:` (both break BullMQ), and its length
 * is bounded whatever the user-controlled EventKey holds. It includes the account (`ToUserName`) so
 * several Official Accounts can share one Redis: MsgIds are only unique per account.
 * docs/wechat-protocol.md §3.3.
 */
export function jobIdFor(msg: InboundMessage): string {
  const msgId = msg.kind === 'event' ? undefined : msg.msgId;
  if (msgId !== undefined && MSG_ID_RE.test(msgId)) return `msg-${accountPart(msg.toUserName)}-${msgId}`;
  const prefix = msg.kind === 'event' ? 'evt' : msg.kind === 'unknown' ? 'unk' : 'msg';
  return `${prefix}-${sha1Hex(JSON.stringify([msg.toUserName, dedupKey(msg)]))}`;
}

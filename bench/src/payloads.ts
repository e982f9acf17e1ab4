import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { computeSignature } from '@wxrelay/shared';
import { buildCallbackRequest, buildInboundXml } from '@wxrelay/simulator';
import { IDENTITY } from './settings.ts';

/** The text every closed-loop message carries (a typical short chat line). */
export const TEXT_CONTENT = '你好，请问今天的营业时间是几点到几点？';

const MSG_ID_SLOT = '\u0001MSGID\u0001';

/**
 * A text push as the simulator builds it (WeChat's layout, one element per line), split around its
 * MsgId so a load generator can splice in a fresh id per request.
 */
export function textTemplate(content = TEXT_CONTENT, openid: string = IDENTITY.openid): { head: string; tail: string } {
  const xml = buildInboundXml(
    { type: 'text', content },
    { toUserName: IDENTITY.account, fromUserName: openid, createTime: Math.floor(Date.now() / 1000) },
    { msgId: MSG_ID_SLOT, nextId: () => MSG_ID_SLOT },
  );
  const at = xml.indexOf(MSG_ID_SLOT);
  return { head: xml.slice(0, at), tail: xml.slice(at + MSG_ID_SLOT.length) };
}

/** A text push with the given MsgId (for micro-benchmarks and pre-flight checks). */
export function textXml(msgId: string, content = TEXT_CONTENT, openid: string = IDENTITY.openid): string {
  const { head, tail } = textTemplate(content, openid);
  return head + msgId + tail;
}

export interface PlainQuery {
  readonly timestamp: string;
  readonly nonce: string;
  /** `/wx?signature=…&timestamp=…&nonce=…&openid=…` */
  readonly path: string;
}

/** A plain-mode signed path with a fresh timestamp (signature covers token, timestamp, nonce only). */
export function plainQuery(openid: string = IDENTITY.openid, now = Date.now()): PlainQuery {
  const timestamp = String(Math.floor(now / 1000));
  const nonce = String(100_000_000 + Math.floor(Math.random() * 800_000_000));
  const signature = computeSignature(IDENTITY.token, timestamp, nonce);
  return { timestamp, nonce, path: `/wx?signature=${signature}&timestamp=${timestamp}&nonce=${nonce}&openid=${openid}` };
}

/** A distinct 19-digit MsgId per (run tag, index): above 2^53 like real ones. */
export function msgIdFor(runTag: number, index: number): string {
  return `7${String(runTag % 1000).padStart(3, '0')}${String(index).padStart(15, '0')}`;
}

/**
 * Writes `count` safe-mode callbacks (each a fresh Encrypt of a text push with its own MsgId, and
 * its msg_signature) to `file`, one `path\tbody` line each, for wrk to replay. The generator's
 * crypto is paid here, once, not during the measurement. Returns the Unix time they are signed for.
 */
export async function writeSafePool(file: string, count: number, runTag: number): Promise<number> {
  const now = Date.now();
  const { head, tail } = textTemplate();
  const out = createWriteStream(file);
  for (let i = 0; i < count; i++) {
    const request = buildCallbackRequest({
      gatewayUrl: 'http://127.0.0.1/wx',
      token: IDENTITY.token,
      appId: IDENTITY.appId,
      encodingAesKey: IDENTITY.encodingAesKey,
      mode: 'safe',
      xml: head + msgIdFor(runTag, i) + tail,
      now: () => now,
    });
    const url = new URL(request.url);
    const line = `${url.pathname}${url.search}\t${request.body.replaceAll('\n', '')}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return now;
}

/** One raw HTTP/1.1 POST of a plain-mode text push (for the raw-socket load generator). */
export function rawPost(port: number, path: string, body: string): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: text/xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/**
 * Raw requests for message i of a run: its own user (so per-user quotas and turns never
 * interfere), MsgId and a token `tok<i>x` in the text, by which its reply is found again.
 */
export function perUserRequests(port: number, runTag: number, userPrefix: string, text = 'bench'): (i: number) => string {
  return perUserTexts(port, runTag, userPrefix, (i) => `${text} tok${i}x`);
}

/** The openid of message i of a run made by {@link perUserRequests} or {@link perUserTexts}. */
export function perUserOpenid(runTag: number, userPrefix: string, i: number): string {
  return `${userPrefix}${runTag}u${i}`;
}

/** Raw requests for message i of a run, each from its own user, saying `textOf(i)`. */
export function perUserTexts(port: number, runTag: number, userPrefix: string, textOf: (i: number) => string): (i: number) => string {
  const now = Date.now();
  return (i) => {
    const openid = perUserOpenid(runTag, userPrefix, i);
    const { head, tail } = textTemplate(textOf(i), openid);
    return rawPost(port, plainQuery(openid, now).path, head + msgIdFor(runTag, i) + tail);
  };
}

/** Raw requests from one user with one signed query: only the MsgId changes (the open loop). */
export function sameUserRequests(port: number, runTag: number): (i: number) => string {
  const { head, tail } = textTemplate();
  const { path } = plainQuery();
  return (i) => rawPost(port, path, head + msgIdFor(runTag, i) + tail);
}

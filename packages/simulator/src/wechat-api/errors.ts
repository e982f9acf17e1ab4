import { randomBytes } from 'node:crypto';

/**
 * The errmsg each errcode answers with. Wordings follow docs/wechat-protocol.md §10: those for 40001,
 * 40014, 42001, 45008, 45009, 45015, 45047 were seen in real responses, the others are typical.
 */
const ERRMSG: Readonly<Record<number, string>> = {
  [-1]: 'system error',
  40001: 'invalid credential, access_token is invalid or not latest',
  40002: 'invalid grant_type',
  40003: 'invalid openid',
  40004: 'invalid media type',
  40006: 'invalid meida size',
  40007: 'invalid media_id',
  40008: 'invalid message type',
  40013: 'invalid appid',
  40014: 'invalid access_token',
  40033: 'invalid charset. please check your request, if include \\uxxxx will create fail!',
  40125: 'invalid appsecret',
  41001: 'access_token missing',
  41002: 'appid missing',
  41004: 'appsecret missing',
  41005: 'media data missing',
  42001: 'access_token expired',
  43002: 'require POST method',
  44002: 'empty post data',
  44003: 'empty news data',
  44004: 'empty content',
  45002: 'content size out of limit',
  45008: 'article size out of limit',
  45009: 'reach max api daily quota limit',
  45011: 'api minute-quota reach limit',
  45015: 'response out of time limit or subscription is canceled',
  45047: 'out of response count limit',
  45072: 'command invalid',
  45080: 'need interaction with user in 30 seconds',
  45081: 'already in typing state',
  47001: 'data format error',
  48001: 'api unauthorized',
};

/** A WeChat JSON answer: `{ errcode, errmsg }` plus whatever an endpoint adds on success. */
export interface WechatErrorBody {
  errcode: number;
  errmsg: string;
}

/**
 * A request id shaped like the real ones (`6004f3da-1529ba72-5c345f67`: seconds in hex, then two
 * random groups). WeChat appends it to every failing errmsg; `/cgi-bin/openapi/rid/get` explains it.
 */
export function createRid(nowMs: number): string {
  const seconds = Math.floor(nowMs / 1000).toString(16).padStart(8, '0');
  return `${seconds}-${randomBytes(4).toString('hex')}-${randomBytes(4).toString('hex')}`;
}

/**
 * The body WeChat answers for `errcode` (docs/wechat-protocol.md §10). `0` is `{ errcode: 0, errmsg: 'ok' }` with no rid,
 * as the real API does; every other code carries the ` rid: …` suffix.
 */
export function errorBody(errcode: number, nowMs: number): WechatErrorBody {
  if (errcode === 0) return { errcode: 0, errmsg: 'ok' };
  const message = ERRMSG[errcode] ?? 'unknown error';
  return { errcode, errmsg: `${message} rid: ${createRid(nowMs)}` };
}

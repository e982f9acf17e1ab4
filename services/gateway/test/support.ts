import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import {
  cdata,
  computeMsgSignature,
  computeSignature,
  createLogger,
  deriveAesKey,
  encryptMessage,
  loadGatewayConfig,
  type GatewayConfig,
  type Logger,
} from '@wxrelay/shared';
import { startRedis, type TestRedis } from '@wxrelay/testkit';
import { buildApp, type GatewayApp } from '../src/app.js';

export const TOKEN = 'wxrelaytoken';
export const APP_ID = 'wx5823bf96d3bd56c7';
export const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
export const OPENID = 'oia2TjuEGTNoeX76QEjQNrcURxG8';
export const GH_ID = 'gh_7f083739789a';

export function gatewayEnv(redisUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return { WECHAT_TOKEN: TOKEN, WECHAT_APP_ID: APP_ID, WECHAT_ENCODING_AES_KEY: AES_KEY, REDIS_URL: redisUrl, LOG_LEVEL: 'info', ...extra };
}

export function textXml(opts: { msgId?: string; content?: string; from?: string; createTime?: number } = {}): string {
  return [
    '<xml>',
    `<ToUserName><![CDATA[${GH_ID}]]></ToUserName>`,
    `<FromUserName><![CDATA[${opts.from ?? OPENID}]]></FromUserName>`,
    `<CreateTime>${opts.createTime ?? Math.floor(Date.now() / 1000)}</CreateTime>`,
    '<MsgType><![CDATA[text]]></MsgType>',
    `<Content>${cdata(opts.content ?? '你好')}</Content>`,
    `<MsgId>${opts.msgId ?? uniqueMsgId()}</MsgId>`,
    '</xml>',
  ].join('\n');
}

export function eventXml(event: string, opts: { eventKey?: string; from?: string; createTime?: number; extra?: string } = {}): string {
  return [
    '<xml>',
    `<ToUserName><![CDATA[${GH_ID}]]></ToUserName>`,
    `<FromUserName><![CDATA[${opts.from ?? OPENID}]]></FromUserName>`,
    `<CreateTime>${opts.createTime ?? Math.floor(Date.now() / 1000)}</CreateTime>`,
    '<MsgType><![CDATA[event]]></MsgType>',
    `<Event><![CDATA[${event}]]></Event>`,
    ...(opts.eventKey === undefined ? [] : [`<EventKey>${cdata(opts.eventKey)}</EventKey>`]),
    ...(opts.extra === undefined ? [] : [opts.extra]),
    '</xml>',
  ].join('\n');
}

let msgCounter = 0n;
/** 64-bit-ish MsgIds above 2^53, unique per call. */
export function uniqueMsgId(): string {
  msgCounter += 1n;
  return (6054768590064713728n + BigInt(Date.now()) * 1000n + msgCounter).toString();
}

export interface SignedRequest {
  readonly url: string;
  readonly payload: string;
}

function query(params: Record<string, string>): string {
  return new URLSearchParams(params).toString();
}

/** A plain-mode POST, signed as WeChat signs it. */
export function plainRequest(xml: string, opts: { token?: string; timestamp?: string; nonce?: string; path?: string } = {}): SignedRequest {
  const timestamp = opts.timestamp ?? String(Math.floor(Date.now() / 1000));
  const nonce = opts.nonce ?? String(randomBytes(4).readUInt32BE());
  const signature = computeSignature(opts.token ?? TOKEN, timestamp, nonce);
  return { url: `${opts.path ?? '/wx'}?${query({ signature, timestamp, nonce, openid: OPENID })}`, payload: xml };
}

/** A safe-mode (or compatible-mode) POST: Encrypt + msg_signature, as WeChat sends it. */
export function encryptedRequest(
  xml: string,
  opts: { compat?: boolean; appId?: string; aesKey?: string; token?: string; timestamp?: string; nonce?: string } = {},
): SignedRequest & { encrypt: string } {
  const token = opts.token ?? TOKEN;
  const timestamp = opts.timestamp ?? String(Math.floor(Date.now() / 1000));
  const nonce = opts.nonce ?? String(randomBytes(4).readUInt32BE());
  const encrypt = encryptMessage(deriveAesKey(opts.aesKey ?? AES_KEY), xml, opts.appId ?? APP_ID);
  const inner = opts.compat === true ? xml.replace(/^<xml>|<\/xml>$/g, '') : `<ToUserName><![CDATA[${GH_ID}]]></ToUserName>`;
  const body = `<xml>${inner}\n<Encrypt><![CDATA[${encrypt}]]></Encrypt>\n</xml>`;
  const params = {
    signature: computeSignature(token, timestamp, nonce),
    timestamp,
    nonce,
    openid: OPENID,
    encrypt_type: 'aes',
    msg_signature: computeMsgSignature(token, timestamp, nonce, encrypt),
  };
  return { url: `/wx?${query(params)}`, payload: body, encrypt };
}

/** Collects a logger's NDJSON lines so tests can read logs as data. */
export interface CapturedLogs {
  readonly lines: string[];
  records(): Record<string, unknown>[];
  readonly logger: Logger;
}

export function captureLogs(): CapturedLogs {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return {
    lines,
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    logger: createLogger({ name: 'gateway', level: 'info', destination }),
  };
}

export interface GatewayHarness {
  readonly app: GatewayApp;
  readonly config: GatewayConfig;
  readonly logs: CapturedLogs;
  readonly prefix: string;
  close(): Promise<void>;
}

/** A gateway app on a fresh queue prefix of a real Redis, with its logs captured. */
export async function startGateway(redis: TestRedis, extraEnv: Record<string, string> = {}, now?: () => number): Promise<GatewayHarness> {
  const config = loadGatewayConfig(gatewayEnv(redis.url, extraEnv));
  const logs = captureLogs();
  const prefix = redis.uniquePrefix('gw');
  const app = await buildApp(config, { logger: logs.logger, queuePrefix: prefix, ...(now === undefined ? {} : { now }) });
  await app.ready();
  return { app, config, logs, prefix, close: () => app.close() };
}

export { startRedis };

import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { buildCallbackRequest } from '@wxrelay/simulator';
import {
  cdata,
  createLogger,
  deriveAesKey,
  jobIdFor,
  loadGatewayConfig,
  parseInboundMessage,
  type GatewayConfig,
  type Logger,
} from '@wxrelay/shared';
import { beforeAll, afterAll } from 'vitest';
import { startRedis, type StartRedisOptions, type TestRedis } from '@wxrelay/testkit';
import type { ProducerPath } from '@wxrelay/shared/queue';
import { buildApp, type GatewayApp, type GatewayDeps } from '../src/app.js';

/**
 * The producer path this run of the gateway suite is on. The root vitest config runs the suite
 * twice: project `gateway` on the default (the one-command script path, which the startup check
 * must accept), project `gateway-addBulk` with `WXRELAY_PRODUCER=addBulk` (the fallback). Only
 * tests read the variable; the gateway itself takes the path as a dependency.
 */
export const PRODUCER_PATH: ProducerPath = process.env.WXRELAY_PRODUCER === 'addBulk' ? 'addBulk' : 'script';

/** The gateway dependencies that put an app on {@link PRODUCER_PATH}. */
export function producerDeps(): Pick<GatewayDeps, 'producerPath'> {
  return PRODUCER_PATH === 'addBulk' ? { producerPath: 'addBulk' } : {};
}

/** Builds an app with `deps` on this run's producer path, and fails when it is on another. */
export async function buildTestApp(config: GatewayConfig, deps: GatewayDeps): Promise<GatewayApp> {
  const app = await buildApp(config, { ...deps, ...producerDeps() });
  await app.ready();
  if (app.enqueuePath !== PRODUCER_PATH) {
    await app.close();
    throw new Error(`the gateway enqueues via ${app.enqueuePath}, this run is for ${PRODUCER_PATH} (did the startup check refuse the installed bullmq?)`);
  }
  return app;
}

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

/** A text message from its own user (`from`, else a fresh openid), and the job id the gateway gives it. */
export function userMessage(from = `o${randomBytes(9).toString('hex')}`): { xml: string; jobId: string; openid: string } {
  const xml = textXml({ msgId: uniqueMsgId(), from });
  return { xml, jobId: jobIdFor(parseInboundMessage(xml)), openid: from };
}

export interface SignedRequest {
  readonly url: string;
  readonly payload: string;
}

function asInjectable(req: { url: string; body: string }): SignedRequest {
  const url = new URL(req.url);
  return { url: `${url.pathname}${url.search}`, payload: req.body };
}

/** A plain-mode POST, signed as WeChat signs it (by the simulator's callback client). */
export function plainRequest(xml: string, opts: { token?: string; timestamp?: string } = {}): SignedRequest {
  return asInjectable(
    buildCallbackRequest({
      gatewayUrl: 'http://gateway.test/wx',
      token: opts.token ?? TOKEN,
      appId: APP_ID,
      mode: 'plain',
      xml,
      ...(opts.timestamp === undefined ? {} : { now: () => Number(opts.timestamp) * 1000 }),
    }),
  );
}

/** POSTs `xml` to `app` in plain mode, signed. */
export function postPlain(app: GatewayApp, xml: string) {
  const req = plainRequest(xml);
  return app.inject({ method: 'POST', url: req.url, payload: req.payload, headers: { 'content-type': 'text/xml' } });
}

/** A safe-mode (or compatible-mode) POST: Encrypt + msg_signature, as WeChat sends it. */
export function encryptedRequest(xml: string, opts: { compat?: boolean; appId?: string } = {}): SignedRequest & { encrypt: string } {
  const key = deriveAesKey(AES_KEY);
  const req = buildCallbackRequest(
    { gatewayUrl: 'http://gateway.test/wx', token: TOKEN, appId: opts.appId ?? APP_ID, encodingAesKey: AES_KEY, mode: opts.compat === true ? 'compat' : 'safe', xml },
    key,
  );
  const encrypt = /<Encrypt><!\[CDATA\[([^\]]*)\]\]><\/Encrypt>/.exec(req.body)?.[1] ?? '';
  return { ...asInjectable(req), encrypt };
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

/** The value of an app's dedup-hit counter (`wxrelay_gateway_dedup_hits_total`). */
export async function dedupHits(app: GatewayApp): Promise<number> {
  const metric = await app.metrics.dedupHits.get();
  return metric.values[0]?.value ?? 0;
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
  const app = await buildTestApp(config, { logger: logs.logger, queuePrefix: prefix, ...(now === undefined ? {} : { now }) });
  return { app, config, logs, prefix, close: () => app.close() };
}

/** A gateway harness that also hands out its Redis (to stop and start it). */
export interface GatewayFixture extends GatewayHarness {
  readonly redis: TestRedis;
}

/**
 * Registers beforeAll/afterAll hooks giving the enclosing describe block a gateway on a fresh
 * queue prefix of a real Redis; the returned object reads the current one.
 */
export function useGateway(extraEnv: Record<string, string> = {}, redisOptions: StartRedisOptions = {}): GatewayFixture {
  let redis: TestRedis | undefined;
  let harness: GatewayHarness | undefined;
  beforeAll(async () => {
    redis = await startRedis(redisOptions);
    harness = await startGateway(redis, extraEnv);
  });
  afterAll(async () => {
    await harness?.close();
    await redis?.close();
  });
  const current = (): GatewayHarness & { redis: TestRedis } => {
    if (harness === undefined || redis === undefined) throw new Error('useGateway: read outside a test');
    return { ...harness, redis };
  };
  return {
    get app() {
      return current().app;
    },
    get config() {
      return current().config;
    },
    get logs() {
      return current().logs;
    },
    get prefix() {
      return current().prefix;
    },
    get redis() {
      return current().redis;
    },
    close: () => current().close(),
  };
}

export { startRedis };

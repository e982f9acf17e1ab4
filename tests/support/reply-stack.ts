/**
 * A wxrelay stack of real processes for the reply-channel tests: a private redis-server, N built
 * gateways and M built workers (`node services/<name>/dist/main.js`), WeChat's API and an LLM faked
 * by the simulator's servers, and callbacks sent as WeChat sends them (the simulator's
 * `sendCallback`: three attempts, each cut at 5 s).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { buildIfStale, freePort, spawnService, startRedis, type SpawnedService, type TestRedis } from '@wxrelay/testkit';
import {
  createInboundXmlBuilder,
  sendCallback,
  startFakeLlm,
  startFakeWechatApi,
  type CallbackMode,
  type CallbackResult,
  type FakeLlm,
  type FakeWechatApi,
} from '@wxrelay/simulator';

export const APP = { appId: 'wx5823bf96d3bd56c7', appSecret: '0123456789abcdef0123456789abcdef' } as const;
export const TOKEN = 'replytoken';
export const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
export const ACCOUNT = 'gh_5ac4e2e00002';

/**
 * The fake LLM's answers, driven by the question: `wait <ms> <text>` answers after `ms`,
 * `long <bytes>` answers with that many bytes of numbered lines; otherwise at once. Each answer
 * names its question (`答：<question>`), so a test can tell which message it answers.
 */
export async function scriptedLlm(): Promise<FakeLlm> {
  const llm = await startFakeLlm({});
  llm.setReply(async (messages) => {
    const question = [...messages].reverse().find((m) => m.role === 'user')?.content ?? '';
    const text = typeof question === 'string' ? question : JSON.stringify(question);
    const wait = /^wait (\d+) /.exec(text);
    if (wait !== null) await sleep(Number(wait[1]));
    const long = /^long (\d+)/.exec(text);
    if (long !== null) return longAnswer(Number(long[1]));
    return `答：${text}`;
  });
  return llm;
}

/** `bytes` UTF-8 bytes of numbered lines (ASCII), so pages can be checked for order and loss. */
export function longAnswer(bytes: number): string {
  const lines: string[] = [];
  let size = 0;
  for (let i = 1; size < bytes; i++) {
    const line = `line ${String(i).padStart(4, '0')} of the long answer`;
    lines.push(line);
    size += line.length + 1;
  }
  return lines.join('\n').slice(0, bytes);
}

export interface StackOptions {
  readonly mode: 'customer-service' | 'passive' | 'auto';
  readonly gateways?: number;
  readonly workers?: number;
  readonly gatewayEnv?: Readonly<Record<string, string>>;
  readonly workerEnv?: Readonly<Record<string, string>>;
  /** The fake WeChat API answers 48001 to customer-service sends (an unverified account). */
  readonly unverified?: boolean;
}

export interface ReplyStack {
  readonly redis: TestRedis;
  readonly wechat: FakeWechatApi;
  readonly llm: FakeLlm;
  readonly gateways: SpawnedService[];
  readonly gatewayUrls: string[];
  readonly gatewayMetricsUrls: string[];
  readonly workers: SpawnedService[];
  readonly workerMetricsUrls: string[];
  /** Starts one more worker (after a kill, say). */
  startWorker(env?: Readonly<Record<string, string>>): Promise<SpawnedService>;
  /**
   * Sends one push from `user` as WeChat does. `route(attempt)` picks the gateway per attempt
   * (default: the first). `encrypted`: safe mode.
   */
  send(user: string, spec: { type: 'text'; content: string } | { type: 'event'; event: 'subscribe' }, opts?: SendOptions): Promise<CallbackResult & { startedAt: number; endedAt: number; headers: Record<string, string>[] }>;
  close(): Promise<void>;
}

export interface SendOptions {
  readonly mode?: CallbackMode;
  readonly route?: (attempt: number) => number;
}

export async function startReplyStack(opts: StackOptions): Promise<ReplyStack> {
  buildIfStale(['packages/simulator', 'services/gateway', 'services/worker']);
  const redis = await startRedis({ private: true });
  const wechat = await startFakeWechatApi({ appId: APP.appId, appSecret: APP.appSecret, unverified: opts.unverified === true });
  const llm = await scriptedLlm();
  const common = { WECHAT_APP_ID: APP.appId, REDIS_URL: redis.url, LOG_LEVEL: 'info', REPLY_MODE: opts.mode, METRICS_HOST: '127.0.0.1' };
  const gateways: SpawnedService[] = [];
  const gatewayUrls: string[] = [];
  const gatewayMetricsUrls: string[] = [];
  for (let i = 0; i < (opts.gateways ?? 1); i++) {
    const port = await freePort();
    const metricsPort = await freePort();
    const g = spawnService('services/gateway/dist/main.js', {
      ...common,
      WECHAT_TOKEN: TOKEN,
      WECHAT_ENCODING_AES_KEY: AES_KEY,
      PORT: String(port),
      HOST: '127.0.0.1',
      METRICS_PORT: String(metricsPort),
      ...opts.gatewayEnv,
    });
    gateways.push(g);
    gatewayUrls.push(`http://127.0.0.1:${port}/wx`);
    gatewayMetricsUrls.push(`http://127.0.0.1:${metricsPort}/metrics`);
  }
  const workers: SpawnedService[] = [];
  const workerMetricsUrls: string[] = [];
  const startWorker = async (env: Readonly<Record<string, string>> = {}): Promise<SpawnedService> => {
    const metricsPort = await freePort();
    const w = spawnService('services/worker/dist/main.js', {
      ...common,
      WECHAT_APP_SECRET: APP.appSecret,
      WECHAT_API_BASE_URL: wechat.url,
      LLM_BASE_URL: llm.url,
      LLM_TIMEOUT_MS: '60000',
      METRICS_PORT: String(metricsPort),
      ...opts.workerEnv,
      ...env,
    });
    workers.push(w);
    workerMetricsUrls.push(`http://127.0.0.1:${metricsPort}/metrics`);
    await w.waitForLine(/worker started/, 30_000);
    return w;
  };
  for (let i = 0; i < (opts.workers ?? 1); i++) await startWorker();
  for (const g of gateways) await g.waitForLine(/gateway listening/, 30_000);

  const xml = createInboundXmlBuilder({ account: ACCOUNT });
  return {
    redis,
    wechat,
    llm,
    gateways,
    gatewayUrls,
    gatewayMetricsUrls,
    workers,
    workerMetricsUrls,
    startWorker,
    async send(user, spec, sendOpts = {}) {
      const built = xml.build(user, spec.type === 'text' ? { type: 'text', content: spec.content } : { type: 'event', event: 'subscribe' });
      // WeChat opens the user's customer-service window when the user writes (its fake must know).
      wechat.userInteracted(user, spec.type === 'text' ? 'message' : 'event');
      const route = sendOpts.route ?? (() => 0);
      let attempt = 0;
      const headers: Record<string, string>[] = [];
      const startedAt = Date.now();
      const result = await sendCallback({
        gatewayUrl: gatewayUrls[0]!,
        token: TOKEN,
        appId: APP.appId,
        encodingAesKey: AES_KEY,
        mode: sendOpts.mode ?? 'plain',
        xml: built.xml,
        fetch: async (input, init) => {
          attempt += 1;
          const url = new URL(input instanceof Request ? input.url : input);
          const target = new URL(gatewayUrls[route(attempt) % gatewayUrls.length]!);
          url.host = target.host;
          const res = await fetch(url, init);
          headers.push(Object.fromEntries(res.headers.entries()));
          return res;
        },
      });
      return { ...result, startedAt, endedAt: Date.now(), headers };
    },
    async close() {
      await Promise.all(workers.map((w) => w.stop().catch(() => undefined)));
      await Promise.all(gateways.map((g) => g.stop().catch(() => undefined)));
      await wechat.close();
      await llm.close();
      await redis.close();
    },
  };
}

/** The value of one sample in a Prometheus text exposition (0 when absent). */
export async function scrape(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(url)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

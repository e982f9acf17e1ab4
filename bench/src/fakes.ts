/**
 * Child process: the simulator's fake WeChat API (no 48-hour window or quotas: `enforceWindow:
 * false`) and its fake LLM, off the load generator's event loop. It stamps every customer-service
 * send as it is accepted ({@link nowMs}, comparable with the parent's clock) and answers the
 * parent over IPC.
 *
 * Parent → child: `{ id, cmd: 'reset' }`, `{ id, cmd: 'collect', count, timeoutMs }`, `{ id, cmd: 'delay', ms }`
 * (the fake LLM's answer time from now on).
 * Child → parent: `{ ready: { apiUrl, llmUrl } }`, `{ id, deliveries: { tokens, at, to, users } }`.
 */
import { startFakeLlm, startFakeWechatApi, type Delivery } from '@wxrelay/simulator';
import { nowMs } from './stats.ts';

/** The token a bench message carries in its text (`… tok123x …`), echoed back by the worker or the LLM. */
export const TOKEN_RE = /tok(\d+)x/;

export interface FakesReady {
  readonly apiUrl: string;
  readonly llmUrl: string;
}
export interface CollectedDeliveries {
  /** Token of each accepted send, in order. */
  readonly tokens: number[];
  /** When each was accepted (ms). */
  readonly at: number[];
  /** Whom each was sent to (openid). */
  readonly to: string[];
  /** Distinct users sent to. */
  readonly users: number;
  readonly total: number;
}
export type FakesRequest = { id: number; cmd: 'reset' } | { id: number; cmd: 'collect'; count: number; timeoutMs: number } | { id: number; cmd: 'delay'; ms: number };
export type FakesMessage = { ready: FakesReady } | { id: number; deliveries?: CollectedDeliveries };

function isRequest(m: unknown): m is FakesRequest {
  return typeof m === 'object' && m !== null && 'cmd' in m && 'id' in m;
}

function textOf(d: Delivery): string {
  const text = d.body.text;
  return typeof text === 'object' && text !== null && 'content' in text && typeof text.content === 'string' ? text.content : '';
}

async function main(): Promise<void> {
  const send = (m: FakesMessage): void => {
    process.send?.(m);
  };
  const api = await startFakeWechatApi({
    appId: process.env.WECHAT_APP_ID ?? '',
    appSecret: process.env.WECHAT_APP_SECRET ?? '',
    enforceWindow: false,
  });
  const llm = await startFakeLlm({ delayMs: Number(process.env.LLM_DELAY_MS ?? '0') });

  let tokens: number[] = [];
  let at: number[] = [];
  let to: string[] = [];
  let users = new Set<string>();
  let waiter: { count: number; resolve: () => void } | undefined;
  api.on('delivery', (d) => {
    const stamp = nowMs();
    const match = TOKEN_RE.exec(textOf(d));
    tokens.push(match === null ? -1 : Number(match[1]));
    at.push(stamp);
    to.push(d.touser);
    users.add(d.touser);
    if (waiter !== undefined && tokens.length >= waiter.count) waiter.resolve();
  });

  process.on('message', (m: unknown) => {
    if (!isRequest(m)) return;
    if (m.cmd === 'reset') {
      api.reset();
      llm.reset();
      tokens = [];
      at = [];
      to = [];
      users = new Set();
      send({ id: m.id });
      return;
    }
    if (m.cmd === 'delay') {
      llm.setDelay(m.ms);
      send({ id: m.id });
      return;
    }
    const reply = (): void => {
      waiter = undefined;
      send({ id: m.id, deliveries: { tokens, at, to, users: users.size, total: tokens.length } });
    };
    if (tokens.length >= m.count) return reply();
    const timer = setTimeout(reply, m.timeoutMs);
    waiter = {
      count: m.count,
      resolve: () => {
        clearTimeout(timer);
        reply();
      },
    };
  });
  process.on('SIGTERM', () => {
    void Promise.all([api.close(), llm.close()]).finally(() => process.exit(0));
  });
  send({ ready: { apiUrl: api.url, llmUrl: llm.url } });
}

await main();

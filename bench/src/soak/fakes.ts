/**
 * Child process of `pnpm soak`: the simulator's fake WeChat API (no 48-hour window) and fake LLM,
 * each with faults injected at a low steady rate, off the sender's event loop.
 *
 * Faults (one every `faultEveryMs` on each side, when > 0):
 * - customer-service send: errcode -1, HTTP 502 (a proxy's HTML page), HTTP 500 with -1, or a slow
 *   answer (`slowSendMs`, below the worker's API timeout, so the send is not in doubt);
 * - LLM: HTTP 500 / 503 / 429, and every `llmSlowEvery`-th answer is held `llmSlowMs`.
 * None of them makes WeChat accept a send whose answer the worker never sees, so none of them may
 * cause a duplicate.
 *
 * Every accepted send is streamed to the parent (batched): `{ deliveries: [{ i, at, touser, text }] }`.
 * Parent → child: `{ cmd: 'faults', on: boolean }` (stop injecting for the drain).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { startFakeLlm, startFakeWechatApi, type ChatMessage, type Delivery, type InjectionRule } from '@wxrelay/simulator';
import { nowMs } from '../stats.ts';

export interface SoakDelivery {
  /** Order of acceptance by the fake API (0, 1, 2, …). */
  readonly i: number;
  /** When it was accepted (ms, comparable with the parent's `nowMs`). */
  readonly at: number;
  readonly touser: string;
  /** The text content (`''` for other message types). */
  readonly text: string;
}

export interface SoakFakesReady {
  readonly apiUrl: string;
  readonly llmUrl: string;
}

export type SoakFakesMessage =
  | { readonly ready: SoakFakesReady }
  | { readonly deliveries: readonly SoakDelivery[] }
  | { readonly injected: { readonly api: number; readonly llm: number; readonly llmSlow: number } };

export interface SoakFakesEnv {
  readonly appId: string;
  readonly appSecret: string;
  readonly faultEveryMs: number;
  readonly slowSendMs: number;
  readonly llmSlowEvery: number;
  readonly llmSlowMs: number;
}

function textOf(d: Delivery): string {
  const text = d.body.text;
  return typeof text === 'object' && text !== null && 'content' in text && typeof text.content === 'string' ? text.content : '';
}

async function main(): Promise<void> {
  const env = JSON.parse(process.env.SOAK_FAKES ?? '{}') as SoakFakesEnv;
  const send = (m: SoakFakesMessage): void => {
    process.send?.(m);
  };
  const api = await startFakeWechatApi({ appId: env.appId, appSecret: env.appSecret, enforceWindow: false });
  let llmCalls = 0;
  let llmSlow = 0;
  const echo = (messages: ChatMessage[]): string => `Echo: ${messages.findLast((m) => m.role === 'user')?.content ?? ''}`;
  const llm = await startFakeLlm({
    reply: async (messages) => {
      llmCalls += 1;
      if (env.llmSlowEvery > 0 && llmCalls % env.llmSlowEvery === 0) {
        llmSlow += 1;
        await delay(env.llmSlowMs);
      }
      return echo(messages);
    },
  });

  let pending: SoakDelivery[] = [];
  let index = 0;
  api.on('delivery', (d) => {
    pending.push({ i: index++, at: nowMs(), touser: d.touser, text: textOf(d) });
  });
  const flush = (): void => {
    if (pending.length === 0) return;
    send({ deliveries: pending });
    pending = [];
  };
  const flusher = setInterval(flush, 100);

  const apiFaults: Omit<InjectionRule, 'path'>[] = [
    { errcode: -1 },
    { httpStatus: 502 },
    { httpStatus: 500, errcode: -1 },
    { delayMs: env.slowSendMs },
  ];
  const llmFaults = [{ status: 500 }, { status: 503 }, { status: 429, retryAfterSeconds: 1 }];
  let injectedApi = 0;
  let injectedLlm = 0;
  let faultsOn = true;
  // One fault at a time on each side: the next is queued only once the previous one was spent
  // (a call came in since), so faults never pile up while nothing calls (Redis down, workers dead).
  let apiSeen = -1;
  let llmSeen = -1;
  const injector =
    env.faultEveryMs > 0
      ? setInterval(() => {
          if (!faultsOn) return;
          if (api.calls.length > apiSeen) {
            apiSeen = api.calls.length;
            api.inject({ path: '/cgi-bin/message/custom/send', ...apiFaults[injectedApi % apiFaults.length]! });
            injectedApi += 1;
          }
          if (llm.requests.length > llmSeen) {
            llmSeen = llm.requests.length;
            llm.inject(llmFaults[injectedLlm % llmFaults.length]!);
            injectedLlm += 1;
          }
        }, env.faultEveryMs)
      : undefined;

  process.on('message', (m: unknown) => {
    if (typeof m === 'object' && m !== null && 'cmd' in m && m.cmd === 'faults' && 'on' in m) {
      faultsOn = m.on === true;
      send({ injected: { api: injectedApi, llm: injectedLlm, llmSlow } });
    }
  });
  process.on('SIGTERM', () => {
    clearInterval(flusher);
    if (injector !== undefined) clearInterval(injector);
    flush();
    void Promise.all([api.close(), llm.close()]).finally(() => process.exit(0));
  });
  send({ ready: { apiUrl: api.url, llmUrl: llm.url } });
}

await main();

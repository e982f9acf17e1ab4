import { describe, expect, it } from 'vitest';
import { createWechatApi, CUSTOM_SEND_PATH } from '../src/wechat/api.js';
import { customMessage, reply } from '../src/wechat/messages.js';
import { WechatApiError } from '../src/wechat/errcodes.js';
import type { TokenStore } from '../src/wechat/token-store.js';
import { fetchTransport, type Fetch } from '../src/http.js';
import { captureLogger } from './support.js';

type Answer = { status?: number; body?: unknown } | 'network' | 'hang';

/** A scripted `fetch` (a dependency, not a server): answers in order, then `{errcode:0}`. */
function scriptedFetch(answers: Answer[]) {
  const calls: { url: string; body: unknown }[] = [];
  const fetch: Fetch = async (input, init) => {
    calls.push({ url: typeof input === 'string' ? input : input instanceof URL ? input.href : input.url, body: init?.body === undefined ? undefined : JSON.parse(String(init.body as string)) });
    const a = answers.shift() ?? { body: { errcode: 0, errmsg: 'ok' } };
    if (a === 'network') throw new TypeError('fetch failed');
    if (a === 'hang') {
      return new Promise<Response>((_, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal?.reason as Error)));
    }
    return new Response(a.body === undefined ? '' : JSON.stringify(a.body), { status: a.status ?? 200 });
  };
  return { fetch, calls };
}

/** An in-memory token store that issues T1, T2… and records invalidations. */
function memoryTokens(): TokenStore & { invalidated: string[]; fetched: () => number } {
  let n = 1;
  const invalidated: string[] = [];
  return {
    invalidated,
    fetched: () => n,
    get: () => Promise.resolve(`T${n}`),
    invalidate: (t) => {
      invalidated.push(t);
      if (t === `T${n}`) n += 1;
      return Promise.resolve();
    },
  };
}

const message = customMessage('openid-1', reply.text('hello'));

function api(fetch: Fetch, tokens: TokenStore, timeoutMs = 1_000) {
  const results: (number | string)[] = [];
  const cap = captureLogger('debug');
  const client = createWechatApi({ baseUrl: 'http://wechat.test', transport: fetchTransport(fetch), tokens, log: cap.log, timeoutMs, onResult: (_p, e) => results.push(e) });
  return { client, results, cap };
}

describe('createWechatApi', () => {
  it('posts the body to custom/send with the token in the query', async () => {
    const f = scriptedFetch([]);
    const { client } = api(f.fetch, memoryTokens());
    await client.sendCustomMessage(message);
    expect(f.calls).toHaveLength(1);
    expect(f.calls[0]!.url).toBe(`http://wechat.test${CUSTOM_SEND_PATH}?access_token=T1`);
    expect(f.calls[0]!.body).toEqual({ touser: 'openid-1', msgtype: 'text', text: { content: 'hello' } });
  });

  it.each([40001, 40014, 42001])('on %i expires exactly the failed token and retries once with a fresh one', async (errcode) => {
    const f = scriptedFetch([{ body: { errcode, errmsg: 'invalid credential rid: x' } }]);
    const tokens = memoryTokens();
    const { client, results } = api(f.fetch, tokens);
    await client.sendCustomMessage(message);
    expect(tokens.invalidated).toEqual(['T1']);
    expect(f.calls.map((c) => c.url.split('=')[1])).toEqual(['T1', 'T2']);
    expect(results).toEqual([errcode, 0]);
  });

  it('fails after one refresh when the fresh token is rejected too', async () => {
    const f = scriptedFetch([{ body: { errcode: 40001 } }, { body: { errcode: 40001 } }]);
    const tokens = memoryTokens();
    const { client } = api(f.fetch, tokens);
    await expect(client.sendCustomMessage(message)).rejects.toMatchObject({ errcode: 40001, reaction: { kind: 'refresh-token' } });
    expect(f.calls).toHaveLength(2);
  });

  // The retries of -1 (at most two) are the job's, counted per part in its progress: see
  // processor.integration.test.ts ("-1 on every send…", "a -1 that recovers…").
  it('makes one call on -1 and throws it with its retry budget: the job retries, not the call', async () => {
    const f = scriptedFetch([{ body: { errcode: -1, errmsg: 'system error' } }, { body: { errcode: -1 } }]);
    const { client, results } = api(f.fetch, memoryTokens());
    await expect(client.sendCustomMessage(message)).rejects.toMatchObject({ errcode: -1, reaction: { kind: 'retry', retries: 2 } });
    expect(f.calls).toHaveLength(1);
    expect(results).toEqual([-1]);
  });

  it.each([45047, 45015, 48001, 43004, 40003])('does not retry %i and says why', async (errcode) => {
    const f = scriptedFetch([{ body: { errcode, errmsg: 'nope' } }]);
    const { client } = api(f.fetch, memoryTokens());
    const err = await client.sendCustomMessage(message).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WechatApiError);
    expect(err).toMatchObject({ code: 'WX_ERR_API' });
    expect((err as WechatApiError).reaction).toMatchObject({ kind: 'give-up', reason: expect.stringContaining(String(errcode)) });
    expect(f.calls).toHaveLength(1);
  });

  it('reports 45009 as a rate limit without retrying in the call', async () => {
    const f = scriptedFetch([{ body: { errcode: 45009, errmsg: 'reach max api daily quota limit' } }]);
    const { client } = api(f.fetch, memoryTokens());
    await expect(client.sendCustomMessage(message)).rejects.toMatchObject({ reaction: { kind: 'rate-limit' } });
  });

  it('reports network errors, 5xx and timeouts after one call each, as retryable', async () => {
    const f = scriptedFetch(['network', { status: 502, body: 'bad gateway' }, 'hang']);
    const { client, results } = api(f.fetch, memoryTokens(), 50);
    for (const errcode of ['network', 'http-5xx', 'network']) {
      await expect(client.sendCustomMessage(message)).rejects.toMatchObject({ code: errcode === 'network' || errcode === 'http-5xx' ? 'WX_ERR_NETWORK' : 'WX_ERR_API', errcode, reaction: { kind: 'retry' } });
    }
    await client.sendCustomMessage(message);
    expect(results).toEqual(['network', 'http-5xx', 'network', 0]);
  });

  it('never puts the token in an error or a log line', async () => {
    const f = scriptedFetch(['network', 'network', 'network', 'network']);
    const tokens: TokenStore = { get: () => Promise.resolve('SECRET-TOKEN'), invalidate: () => Promise.resolve() };
    const { client, cap } = api(f.fetch, tokens);
    const err = await client.sendCustomMessage(message).catch((e: unknown) => e as Error);
    expect(String(err?.message)).not.toContain('SECRET-TOKEN');
    expect(cap.text()).not.toContain('SECRET-TOKEN');
  });

  it('typing never throws, whatever WeChat says', async () => {
    const f = scriptedFetch([{ body: { errcode: 45080 } }, { body: { errcode: 48001 } }]);
    const { client } = api(f.fetch, memoryTokens());
    await client.typing('openid-1', 'Typing');
    await client.typing('openid-1', 'CancelTyping');
    expect(f.calls.map((c) => c.body)).toEqual([
      { touser: 'openid-1', command: 'Typing' },
      { touser: 'openid-1', command: 'CancelTyping' },
    ]);
  });
});

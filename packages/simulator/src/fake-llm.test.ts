import { afterEach, describe, expect, it } from 'vitest';
import { startFakeLlm, type FakeLlm, type FakeLlmOptions } from './fake-llm.js';

/** The parts of OpenAI answers these tests read. */
interface ChatJson {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: { index: number; message: { role: string; content: string }; delta: { content?: string }; finish_reason: string | null }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  error: { message: string; type: string; code: string | null };
  data: { id: string }[];
}

const started: FakeLlm[] = [];

async function start(options?: FakeLlmOptions): Promise<FakeLlm> {
  const llm = await startFakeLlm(options);
  started.push(llm);
  return llm;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((llm) => llm.close()));
});

async function chat(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: ChatJson; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as ChatJson, headers: res.headers };
}

const CONVERSATION = {
  model: 'gpt-test',
  messages: [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: 'first' },
    { role: 'assistant', content: 'ok' },
    { role: 'user', content: 'second question' },
  ],
};

describe('fake LLM: chat completions', () => {
  it('answers an OpenAI chat.completion echoing the last user message', async () => {
    const llm = await start({ now: () => 1_700_000_000_500 });
    expect(llm.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    const { status, json } = await chat(`${llm.url}/chat/completions`, CONVERSATION);
    expect(status).toBe(200);
    expect(json).toMatchObject({
      object: 'chat.completion',
      created: 1_700_000_000,
      model: 'gpt-test',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Echo: second question' }, finish_reason: 'stop' }],
    });
    expect(json.id).toMatch(/^chatcmpl-/);
    expect(json.usage.total_tokens).toBe(json.usage.prompt_tokens + json.usage.completion_tokens);
    expect(json.usage.completion_tokens).toBeGreaterThan(0);
    expect(llm.requests).toEqual([{ model: 'gpt-test', messages: CONVERSATION.messages, at: 1_700_000_000_500 }]);
  });

  it('also answers on /chat/completions without /v1, and flattens content parts', async () => {
    const llm = await start();
    const base = llm.url.replace(/\/v1$/, '');
    const { json } = await chat(`${base}/chat/completions`, {
      model: 'm',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hel' }, { type: 'text', text: 'lo' }] }],
    });
    expect(json.choices[0]?.message.content).toBe('Echo: hello');
  });

  it('uses the reply function given at start and setReply', async () => {
    const llm = await start({ reply: (messages, model) => `${model}:${messages.length}` });
    expect((await chat(`${llm.url}/chat/completions`, CONVERSATION)).json.choices[0]?.message.content).toBe('gpt-test:4');
    llm.setReply(() => '你好');
    expect((await chat(`${llm.url}/chat/completions`, CONVERSATION)).json.choices[0]?.message.content).toBe('你好');
  });

  it('streams server-sent events when stream: true', async () => {
    const llm = await start({ reply: () => 'streamed' });
    const res = await fetch(`${llm.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...CONVERSATION, stream: true }),
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = (await res.text()).split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, '')) as ChatJson);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('streamed');
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
  });

  it.each([
    { title: 'no messages', body: { model: 'm' } },
    { title: 'empty messages', body: { model: 'm', messages: [] } },
    { title: 'a message without role', body: { model: 'm', messages: [{ content: 'x' }] } },
    { title: 'no model', body: { messages: [{ role: 'user', content: 'x' }] } },
    { title: 'malformed JSON', body: '{"model":' },
  ])('$title → 400 with an OpenAI error body', async ({ body }) => {
    const llm = await start();
    const { status, json } = await chat(`${llm.url}/chat/completions`, body);
    expect(status).toBe(400);
    expect(json.error).toMatchObject({ type: 'invalid_request_error', message: expect.any(String) });
    expect(llm.requests).toHaveLength(0);
  });
});

describe('fake LLM: auth', () => {
  it('checks the bearer key when apiKey is set', async () => {
    const llm = await start({ apiKey: 'sk-test' });
    const missing = await chat(`${llm.url}/chat/completions`, CONVERSATION);
    expect(missing.status).toBe(401);
    expect(missing.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });
    expect((await chat(`${llm.url}/chat/completions`, CONVERSATION, { authorization: 'Bearer sk-wrong' })).status).toBe(401);
    expect((await chat(`${llm.url}/chat/completions`, CONVERSATION, { authorization: 'Bearer sk-test' })).status).toBe(200);
    expect(llm.requests).toHaveLength(1);
  });

  it('accepts any caller without apiKey', async () => {
    const llm = await start();
    expect((await chat(`${llm.url}/chat/completions`, CONVERSATION, { authorization: 'Bearer whatever' })).status).toBe(200);
  });
});

describe('fake LLM: faults and timing', () => {
  it('inject fails the next requests FIFO, then recovers; attempts are recorded', async () => {
    const llm = await start();
    llm.inject({ status: 429, times: 2, retryAfterSeconds: 3 });
    llm.inject({ status: 500 });
    const first = await chat(`${llm.url}/chat/completions`, CONVERSATION);
    expect(first.status).toBe(429);
    expect(first.headers.get('retry-after')).toBe('3');
    expect(first.json.error.code).toBe('rate_limit_exceeded');
    expect((await chat(`${llm.url}/chat/completions`, CONVERSATION)).status).toBe(429);
    const third = await chat(`${llm.url}/chat/completions`, CONVERSATION);
    expect(third.status).toBe(500);
    expect(third.json.error.type).toBe('server_error');
    expect((await chat(`${llm.url}/chat/completions`, CONVERSATION)).status).toBe(200);
    expect(llm.requests).toHaveLength(4);
  });

  it('a delay holds one request without blocking the others', async () => {
    const llm = await start({ delayMs: 40 });
    const t0 = performance.now();
    const answers = await Promise.all([1, 2, 3].map(() => chat(`${llm.url}/chat/completions`, CONVERSATION)));
    const elapsed = performance.now() - t0;
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(35);
    expect(elapsed).toBeLessThan(110); // three in parallel, not 120 ms in series
    llm.setDelay(0);
    const t1 = performance.now();
    await chat(`${llm.url}/chat/completions`, CONVERSATION);
    expect(performance.now() - t1).toBeLessThan(35);
  });

  it('close() does not hang on an in-flight delayed request', async () => {
    const llm = await startFakeLlm({ delayMs: 60_000 });
    const pending = chat(`${llm.url}/chat/completions`, CONVERSATION).catch((err: unknown) => err);
    while (llm.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 2));
    const t0 = performance.now();
    await llm.close();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await pending).toBeInstanceOf(Error);
  });

  it('reset forgets requests and injections', async () => {
    const llm = await start();
    await chat(`${llm.url}/chat/completions`, CONVERSATION);
    llm.inject({ status: 500 });
    llm.reset();
    expect(llm.requests).toHaveLength(0);
    expect((await chat(`${llm.url}/chat/completions`, CONVERSATION)).status).toBe(200);
  });

  it('GET /v1/models lists the fake model', async () => {
    const llm = await start();
    const json = (await (await fetch(`${llm.url}/models`)).json()) as ChatJson;
    expect(json.data[0]?.id).toBe('fake-llm');
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIfStale, freePort } from '@wxrelay/testkit';

/**
 * End to end, as a user runs it: `pnpm start` (scripts/start.ts) with no REDIS_URL starts an
 * embedded redis-server, the built gateway, one worker and the simulator as child processes;
 * messages go in through the simulator (signed like WeChat) and come back as customer-service
 * sends the worker made to the simulator's WeChat API.
 */
interface SimEvent {
  type: 'inbound' | 'callback' | 'delivery' | 'typing';
  user: string;
  outcome?: string;
  msgtype?: string;
  body?: { text?: { content?: string } };
}

describe('pnpm start (the whole stack, no Docker)', () => {
  const root = resolve(import.meta.dirname, '..');
  let stack: ChildProcess;
  let output = '';
  let sim = '';
  let dataDir = '';

  beforeAll(async () => {
    buildIfStale(['packages/simulator', 'services/gateway', 'services/worker']);
    dataDir = mkdtempSync(join(tmpdir(), 'wxrelay-stack-'));
    const rules = join(dataDir, 'rules.yaml');
    writeFileSync(rules, 'rules:\n  - match: { msgType: text, content: 帮助 }\n    reply: 回复“人工”转接客服\n  - match: { event: CLICK, eventKey: MENU_NEWS }\n    reply: { msgtype: news, news: { articles: [{ title: 今日新闻, description: d, url: "https://example.com/n", picurl: "https://example.com/p.jpg" }] } }\n');
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      PORT: String(await freePort()),
      SIM_PORT: String(await freePort()),
      METRICS_PORT: '0',
      WXRELAY_DATA_DIR: dataDir,
      WELCOME_MESSAGE: 'welcome aboard',
      REPLY_RULES_FILE: rules,
    };
    stack = spawn(process.execPath, ['scripts/start.ts'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const ready = new Promise<string>((res, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const m = /READY (\{.*\})/.exec(output);
        if (m?.[1] !== undefined) res((JSON.parse(m[1]) as { chat: string }).chat.replace(/\/$/, ''));
      };
      stack.stdout?.on('data', onData);
      stack.stderr?.on('data', (c: Buffer) => (output += c.toString()));
      stack.once('exit', (code) => reject(new Error(`pnpm start exited with ${code}:\n${output.slice(-3000)}`)));
    });
    sim = await ready;
  }, 120_000);

  afterAll(async () => {
    if (stack.exitCode === null) {
      const exited = new Promise((r) => stack.once('exit', r));
      stack.kill('SIGINT');
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function send(user: string, message: Record<string, unknown>, mode?: string): Promise<SimEvent> {
    const res = await fetch(`${sim}/sim/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, message, ...(mode === undefined ? {} : { mode }) }) });
    expect(res.status).toBe(200);
    return (await res.json()) as SimEvent;
  }

  /** Reads the simulator's event stream (with replay) until `count` deliveries reached `user`. */
  async function deliveries(user: string, count: number, timeoutMs = 30_000): Promise<SimEvent[]> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const found: SimEvent[] = [];
    try {
      const res = await fetch(`${sim}/sim/events?user=${encodeURIComponent(user)}&replay=1`, { signal: controller.signal });
      const decoder = new TextDecoder();
      let buffer = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let idx: number;
        while ((idx = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, idx);
          buffer = buffer.slice(idx + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('');
          if (data === '') continue;
          const event = JSON.parse(data) as SimEvent;
          if (event.type === 'delivery' && event.user === user) found.push(event);
          if (found.length >= count) return found;
        }
      }
    } catch (err) {
      if (!controller.signal.aborted) throw err;
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
    throw new Error(`only ${found.length} of ${count} deliveries to ${user}; stack output:\n${output.slice(-3000)}`);
  }

  it('answers a text message (safe mode) with a customer-service reply that contains it', async () => {
    const ack = await send('alice', { type: 'text', content: '你好 wxrelay' });
    expect(ack).toMatchObject({ type: 'callback', outcome: 'ack' });
    const [reply] = await deliveries('alice', 1);
    expect(reply?.msgtype).toBe('text');
    expect(reply?.body?.text?.content).toContain('你好 wxrelay');
  });

  it('welcomes a new follower (an event)', async () => {
    expect(await send('bob', { type: 'event', event: 'subscribe' })).toMatchObject({ outcome: 'ack' });
    const [welcome] = await deliveries('bob', 1);
    expect(welcome?.body?.text?.content).toBe('welcome aboard');
  });

  it('handles plain mode too', async () => {
    expect(await send('carol', { type: 'text', content: 'plain hello' }, 'plain')).toMatchObject({ outcome: 'ack' });
    const [reply] = await deliveries('carol', 1);
    expect(reply?.body?.text?.content).toContain('plain hello');
  });

  it('answers from the rules file (REPLY_RULES_FILE): a keyword, and a menu click with a news card', async () => {
    await send('dave', { type: 'text', content: '帮助' });
    const [text] = await deliveries('dave', 1);
    expect(text?.body?.text?.content).toBe('回复“人工”转接客服');
    await send('erin', { type: 'event', event: 'CLICK', eventKey: 'MENU_NEWS' });
    const [news] = await deliveries('erin', 1);
    expect(news?.msgtype).toBe('news');
    expect(JSON.stringify(news?.body)).toContain('今日新闻');
  });

  it('prints where the chat page and the gateway are', () => {
    expect(output).toMatch(/chat page \(the simulator\):\s+http:\/\/127\.0\.0\.1:\d+\//);
    expect(output).toMatch(/gateway \(WeChat's URL\):\s+http:\/\/127\.0\.0\.1:\d+\/wx/);
  });

  it('stops everything cleanly on Ctrl-C', async () => {
    const exited = new Promise<number | null>((r) => stack.once('exit', (code) => r(code)));
    stack.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(output).toContain('stopping: simulator, gateway, worker, then redis');
  });
});

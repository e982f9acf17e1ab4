import { buildReplyXml, parseInboundMessage } from '@wxrelay/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { streamSimEvents } from './sim-event-stream.js';
import type { SimEvent } from './sim-events.js';
import { openidFor, startSimulator, type Simulator } from './simulator-server.js';
import { startStubGateway, type StubGateway } from './test-support/stub-gateway.js';

const APP = { appId: 'wx5823bf96d3bd56c7', appSecret: '0123456789abcdef0123456789abcdef' } as const;
const TOKEN = 'wxrelaytoken';
const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const ACCOUNT = 'gh_0123456789ab';

let gateway: StubGateway;
let sim: Simulator;
const controllers: AbortController[] = [];

beforeEach(async () => {
  gateway = await startStubGateway();
  sim = await startSimulator({ gatewayUrl: gateway.url, token: TOKEN, ...APP, encodingAesKey: AES_KEY, mode: 'safe', account: ACCOUNT });
});
afterEach(async () => {
  for (const c of controllers.splice(0)) c.abort();
  await sim.close();
  await gateway.close();
});

async function postJson(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${sim.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Collects a user's events; `until(predicate)` waits for one that matches. */
async function watch(users?: string[], replay = false): Promise<{ events: SimEvent[]; until(p: (e: SimEvent) => boolean): Promise<SimEvent> }> {
  const controller = new AbortController();
  controllers.push(controller);
  const events: SimEvent[] = [];
  const waiters = new Set<{ p: (e: SimEvent) => boolean; resolve: (e: SimEvent) => void }>();
  const stream = streamSimEvents({
    simUrl: sim.url,
    ...(users === undefined ? {} : { users }),
    replay,
    signal: controller.signal,
    onEvent(event) {
      events.push(event);
      for (const w of waiters) {
        if (!w.p(event)) continue;
        waiters.delete(w);
        w.resolve(event);
      }
    },
  });
  await stream.ready;
  return {
    events,
    until(p) {
      const seen = events.find(p);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.add({ p, resolve });
        setTimeout(() => reject(new Error(`no matching event; got ${JSON.stringify(events)}`)), 10_000).unref();
      });
    },
  };
}

async function accessToken(): Promise<string> {
  const q = new URLSearchParams({ grant_type: 'client_credential', appid: APP.appId, secret: APP.appSecret });
  const json = (await (await fetch(`${sim.url}/cgi-bin/token?${q.toString()}`)).json()) as { access_token: string };
  return json.access_token;
}

async function customSend(body: Record<string, unknown>): Promise<{ errcode: number }> {
  const res = await fetch(`${sim.url}/cgi-bin/message/custom/send?access_token=${await accessToken()}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return (await res.json()) as { errcode: number };
}

describe('startSimulator: /sim/send', () => {
  it('sends a signed safe-mode push for the user and answers the callback result', async () => {
    const { status, json } = await postJson('/sim/send', { user: 'alice', message: { type: 'text', content: '你好' } });
    expect(status).toBe(200);
    expect(json).toMatchObject({ type: 'callback', user: 'alice', outcome: 'ack', tries: 1, status: 200 });
    const openid = openidFor(ACCOUNT, 'alice');
    expect(json.openid).toBe(openid);
    expect(openid).toMatch(/^o[A-Za-z0-9_-]{27}$/);
    expect(gateway.requests).toHaveLength(1);
    expect(gateway.requests[0]!.query).toMatchObject({ encrypt_type: 'aes', openid });
  });

  it('opens the customer-service window as WeChat does: 5 sends for a message, 3 for a follow, none for VIEW', async () => {
    await sim.send({ user: 'msg', message: { type: 'text', content: 'hi' } });
    await sim.send({ user: 'fol', message: { type: 'event', event: 'subscribe' } });
    await sim.send({ user: 'view', message: { type: 'event', event: 'VIEW', eventKey: 'https://x' } });
    expect(sim.api.sendWindow(openidFor(ACCOUNT, 'msg'))).toMatchObject({ trigger: 'message', remaining: 5 });
    expect(sim.api.sendWindow(openidFor(ACCOUNT, 'fol'))).toMatchObject({ trigger: 'event', remaining: 3 });
    expect(sim.api.sendWindow(openidFor(ACCOUNT, 'view'))).toBeUndefined();
  });

  it('reports a decrypted passive reply', async () => {
    const openid = openidFor(ACCOUNT, 'alice');
    gateway.script({ body: buildReplyXml({ kind: 'text', content: 'passive!' }, { toUserName: openid, fromUserName: ACCOUNT, createTime: 1 }) });
    const { json } = await postJson('/sim/send', { user: 'alice', message: { type: 'text', content: 'hi' }, mode: 'compat' });
    expect(json).toMatchObject({ outcome: 'reply', reply: { reply: { kind: 'text', content: 'passive!' } } });
    expect(parseInboundMessage(gateway.requests[0]!.body)).toMatchObject({ kind: 'text', content: 'hi' });
  });

  it.each([
    [{ user: 'a', message: { type: 'event', event: 'CLICK' } }, 'CLICK without an eventKey'],
    [{ user: 'a', message: { type: 'text', content: 5 } }, 'a number as content'],
    [{ user: 'a', message: { type: 'sticker' } }, 'an unknown type'],
    [{ user: '', message: { type: 'text', content: 'x' } }, 'an empty user'],
  ] as const)('answers 400 for %j (%s) and sends nothing', async (body, _why) => {
    const { status } = await postJson('/sim/send', body);
    expect(status).toBe(400);
    expect(gateway.requests).toHaveLength(0);
  });
});

describe('startSimulator: one port for the fake API, the page and the event stream', () => {
  it('streams a user’s push, its result and the worker’s replies, and nothing of other users', async () => {
    const alice = await watch(['alice']);
    await sim.send({ user: 'bob', message: { type: 'text', content: 'bob here' } });
    await sim.send({ user: 'alice', message: { type: 'text', content: 'alice here' } });
    expect(await customSend({ touser: openidFor(ACCOUNT, 'bob'), msgtype: 'text', text: { content: 'to bob' } })).toMatchObject({ errcode: 0 });
    expect(await customSend({ touser: openidFor(ACCOUNT, 'alice'), msgtype: 'text', text: { content: 'to alice' } })).toMatchObject({ errcode: 0 });
    const delivery = await alice.until((e) => e.type === 'delivery');
    expect(delivery).toMatchObject({ user: 'alice', msgtype: 'text', body: { text: { content: 'to alice' } } });
    expect(alice.events.map((e) => e.type)).toEqual(['inbound', 'callback', 'delivery']);
    expect(alice.events.every((e) => e.user === 'alice')).toBe(true);
    expect(alice.events[0]).toMatchObject({ spec: { type: 'text', content: 'alice here' }, mode: 'safe' });
    expect(alice.events[1]).toMatchObject({ ref: (alice.events[0] as { ref: string }).ref, outcome: 'ack' });
  });

  it('relays typing, and replays history to a late subscriber', async () => {
    await sim.send({ user: 'carol', message: { type: 'text', content: 'hi' } });
    const res = await fetch(`${sim.url}/cgi-bin/message/custom/typing?access_token=${await accessToken()}`, {
      method: 'POST',
      body: JSON.stringify({ touser: openidFor(ACCOUNT, 'carol'), command: 'Typing' }),
    });
    expect(await res.json()).toMatchObject({ errcode: 0 });
    const late = await watch(['carol'], true);
    await late.until((e) => e.type === 'typing');
    expect(late.events.map((e) => e.type)).toEqual(['inbound', 'callback', 'typing']);
  });

  it('serves the chat page with its script and a strict content security policy', async () => {
    const page = await fetch(`${sim.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    expect(await page.text()).toContain('<script type="module" src="/chat.js">');
    const script = await fetch(`${sim.url}/chat.js`);
    expect(script.headers.get('content-type')).toMatch(/javascript/);
    expect(await script.text()).toContain('/sim/events');
    const config = await (await fetch(`${sim.url}/sim/config`)).json();
    expect(config).toEqual({ account: ACCOUNT, appId: APP.appId, mode: 'safe', gatewayUrl: gateway.url, unverified: false });
  });

  it('keeps the fake API’s raw-body rules on its routes (44002 for an empty body)', async () => {
    const res = await fetch(`${sim.url}/cgi-bin/message/custom/send?access_token=${await accessToken()}`, { method: 'POST' });
    expect(await res.json()).toMatchObject({ errcode: 44002 });
  });

  it('streams each lapsed try, and tells which try got the passive reply and how the gateway labelled it', async () => {
    await sim.close();
    sim = await startSimulator({ gatewayUrl: gateway.url, token: TOKEN, ...APP, mode: 'plain', account: ACCOUNT, timeoutMs: 200 });
    const openid = openidFor(ACCOUNT, 'erin');
    const reply = buildReplyXml({ kind: 'text', content: '第二次' }, { toUserName: openid, fromUserName: ACCOUNT, createTime: 1 });
    gateway.script('hang', { body: reply, headers: { 'x-wxrelay-reply': 'answer', 'x-wxrelay-attempt': '2' } });
    const erin = await watch(['erin']);
    const { json } = await postJson('/sim/send', { user: 'erin', message: { type: 'text', content: 'hi' } });
    expect(json).toMatchObject({ outcome: 'reply', tries: 2, replyAttempt: 2, replyKind: 'answer', gatewayAttempt: 2, reply: { reply: { content: '第二次' } } });
    await erin.until((e) => e.type === 'callback');
    expect(erin.events.map((e) => e.type)).toEqual(['inbound', 'attempt', 'callback']);
    expect(erin.events[1]).toMatchObject({ ref: (erin.events[0] as { ref: string }).ref, attempt: { attempt: 1, ended: 'cut', startedMs: 0 } });
  });

  it('reports a gateway that does not answer as failed, after WeChat’s tries', async () => {
    await sim.close();
    sim = await startSimulator({ gatewayUrl: gateway.url, token: TOKEN, ...APP, mode: 'plain', timeoutMs: 200 });
    gateway.script('hang');
    const { json } = await postJson('/sim/send', { user: 'dave', message: { type: 'event', event: 'subscribe' } });
    expect(json).toMatchObject({ outcome: 'failed', tries: 3 });
    expect(json.error).toMatch(/no answer within 200 ms/);
    // Two tries that WeChat followed with another; the third is told by the callback alone.
    const dave = await watch(['dave'], true);
    await dave.until((e) => e.type === 'callback');
    expect(dave.events.map((e) => e.type)).toEqual(['inbound', 'attempt', 'attempt', 'callback']);
    expect(gateway.requests).toHaveLength(3);
  });
});

describe('startSimulator: an unverified account', () => {
  it('answers 48001 to custom/send and typing, streams the refusals to the user and counts them at /sim/api-calls', async () => {
    await sim.close();
    sim = await startSimulator({ gatewayUrl: gateway.url, token: TOKEN, ...APP, mode: 'plain', account: ACCOUNT, unverified: true, replyMode: 'passive' });
    expect(await (await fetch(`${sim.url}/sim/config`)).json()).toMatchObject({ unverified: true, replyMode: 'passive' });
    const frank = await watch(['frank']);
    await sim.send({ user: 'frank', message: { type: 'text', content: 'hi' } });
    const openid = openidFor(ACCOUNT, 'frank');
    expect(await customSend({ touser: openid, msgtype: 'text', text: { content: 'answer' } })).toMatchObject({ errcode: 48001 });
    const typing = await fetch(`${sim.url}/cgi-bin/message/custom/typing?access_token=${await accessToken()}`, {
      method: 'POST',
      body: JSON.stringify({ touser: openid, command: 'Typing' }),
    });
    expect(await typing.json()).toMatchObject({ errcode: 48001 });
    await frank.until((e) => e.type === 'unauthorized' && e.path.endsWith('/typing'));
    expect(frank.events.filter((e) => e.type === 'unauthorized')).toMatchObject([
      { user: 'frank', openid, path: '/cgi-bin/message/custom/send', errcode: 48001, what: 'text' },
      { user: 'frank', openid, path: '/cgi-bin/message/custom/typing', errcode: 48001, what: 'Typing' },
    ]);
    expect(frank.events.some((e) => e.type === 'delivery' || e.type === 'typing')).toBe(false);
    const counts = await (await fetch(`${sim.url}/sim/api-calls`)).json();
    expect(counts).toEqual({
      unverified: true,
      deliveries: 0,
      typing: 0,
      tokenFetches: 2,
      unauthorized: { send: 1, typing: 1 },
      answered: {
        '/cgi-bin/token': { '0': 2 },
        '/cgi-bin/message/custom/send': { '48001': 1 },
        '/cgi-bin/message/custom/typing': { '48001': 1 },
      },
    });
  });

  it('a verified one (the default) counts its deliveries at /sim/api-calls and refuses none', async () => {
    await sim.send({ user: 'gina', message: { type: 'text', content: 'hi' } });
    expect(await customSend({ touser: openidFor(ACCOUNT, 'gina'), msgtype: 'text', text: { content: 'a' } })).toMatchObject({ errcode: 0 });
    expect(await customSend({ touser: openidFor(ACCOUNT, 'nobody'), msgtype: 'text', text: { content: 'b' } })).toMatchObject({ errcode: 45015 });
    expect(await (await fetch(`${sim.url}/sim/api-calls`)).json()).toMatchObject({
      unverified: false,
      deliveries: 1,
      unauthorized: { send: 0, typing: 0 },
      answered: { '/cgi-bin/message/custom/send': { '0': 1, '45015': 1 } },
    });
  });
});

import { buildReplyXml, parseInboundMessage } from '@wxrelay/shared';
import { buildIfStale } from '@wxrelay/testkit';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openidFor, startSimulator, type Simulator } from './simulator-server.js';
import { runCliProcess } from './test-support/cli-process.js';
import { startStubGateway, type StubGateway } from './test-support/stub-gateway.js';
import { createWorkerStandIn, type WorkerStandIn } from './test-support/worker-stand-in.js';

const APP = { appId: 'wx5823bf96d3bd56c7', appSecret: '0123456789abcdef0123456789abcdef' } as const;
const TOKEN = 'wxrelaytoken';
const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const ACCOUNT = 'gh_0123456789ab';

let gateway: StubGateway;
let sim: Simulator;
let worker: WorkerStandIn;

beforeAll(() => {
  buildIfStale(['packages/simulator']);
}, 120_000);

beforeEach(async () => {
  gateway = await startStubGateway();
  sim = await startSimulator({ gatewayUrl: gateway.url, token: TOKEN, ...APP, encodingAesKey: AES_KEY, mode: 'safe', account: ACCOUNT });
  worker = createWorkerStandIn(sim.url, APP);
});
afterEach(async () => {
  await sim.close();
  await gateway.close();
});

const received = (i: number): ReturnType<typeof parseInboundMessage> => {
  const request = gateway.requests[i]!;
  if (request.query.encrypt_type === 'aes') throw new Error('decrypt first');
  return parseInboundMessage(request.body);
};

describe('pnpm sim send', () => {
  it('prints the gateway answer, then the replies a worker sends for that user, then exits', async () => {
    const alice = openidFor(ACCOUNT, 'alice');
    // A quick worker: typing and a reply while the gateway is still answering.
    gateway.script(async () => {
      await worker.typing(alice, 'Typing');
      await worker.send({ touser: alice, msgtype: 'text', text: { content: '你好，我是机器人\n第二行' } });
      await worker.send({ touser: openidFor(ACCOUNT, 'bob'), msgtype: 'text', text: { content: 'not for alice' } });
      return { body: 'success' };
    });
    const cli = runCliProcess(['send', 'text', '你好', '--user', 'alice', '--sim', sim.url, '--wait', '2']);
    expect(await cli.exited).toBe(0);
    const out = cli.stdout();
    expect(out).toContain('gateway: success (HTTP 200, 1 try)');
    expect(out).toContain('bot is typing…');
    expect(out).toContain('bot: 你好，我是机器人\n  第二行');
    expect(out).not.toContain('not for alice');
    expect(out.indexOf('gateway:')).toBeLessThan(out.indexOf('bot:'));
    expect(gateway.requests[0]!.query).toMatchObject({ encrypt_type: 'aes', openid: alice });
  });

  it('builds the push the words describe (negative coordinates stay positional) in the asked mode', async () => {
    const cli = runCliProcess(['send', 'location', '-33.8568', '151.2153', 'Sydney', 'Opera', 'House', '--user', 'bob', '--mode', 'plain', '--sim', sim.url, '--wait', '0']);
    expect(await cli.exited).toBe(0);
    expect(received(0)).toMatchObject({
      kind: 'location',
      fromUserName: openidFor(ACCOUNT, 'bob'),
      locationX: '-33.8568',
      locationY: '151.2153',
      label: 'Sydney Opera House',
    });
  });

  it.each([
    [['click', 'MENU_HELP'], { kind: 'event', event: 'CLICK', eventKey: 'MENU_HELP' }],
    [['subscribe', '42'], { kind: 'event', event: 'subscribe', eventKey: 'qrscene_42' }],
    [['image', 'https://example.com/cat.jpg'], { kind: 'image', picUrl: 'https://example.com/cat.jpg' }],
    [['voice', '今天', '天气'], { kind: 'voice', recognition: '今天 天气' }],
  ])('send %j', async (words, parsed) => {
    const cli = runCliProcess(['send', ...words, '--mode', 'plain', '--sim', sim.url, '--wait', '0']);
    expect(await cli.exited).toBe(0);
    expect(received(0)).toMatchObject(parsed);
  });

  it('prints a passive reply', async () => {
    const openid = openidFor(ACCOUNT, 'alice');
    gateway.script({ body: buildReplyXml({ kind: 'news', articles: [{ title: '标题', description: '描述', url: 'https://x.test/a' }] }, { toUserName: openid, fromUserName: ACCOUNT, createTime: 1 }) });
    const cli = runCliProcess(['send', 'text', 'news?', '--mode', 'plain', '--sim', sim.url, '--wait', '0']);
    expect(await cli.exited).toBe(0);
    expect(cli.stdout()).toContain('gateway: passive reply (HTTP 200, 1 try)\nbot (passive): [news] 标题 — 描述 <https://x.test/a>');
  });

  it('stops waiting for replies on SIGTERM / Ctrl-C', async () => {
    const cli = runCliProcess(['send', 'text', 'hi', '--sim', sim.url, '--wait', '600']);
    await cli.waitForOutput(/gateway: success/);
    cli.proc.kill('SIGINT');
    expect(await cli.exited).toBe(0);
  });

  it('exits 1 and says what the user would see when the gateway keeps failing', async () => {
    gateway.script({ status: 500, body: 'boom' });
    const cli = runCliProcess(['send', 'text', 'hi', '--sim', sim.url]);
    expect(await cli.exited).toBe(1);
    expect(cli.stdout()).toMatch(/gateway: FAILED after 3 tries \(HTTP 500\).*该公众号暂时无法提供服务/);
  });

  it('exits 2 with the list of types for an unknown one, sending nothing', async () => {
    const cli = runCliProcess(['send', 'sticker', '--sim', sim.url]);
    expect(await cli.exited).toBe(2);
    expect(cli.stderr()).toMatch(/unknown message type "sticker"/);
    expect(cli.stderr()).toContain('click KEY');
    expect(gateway.requests).toHaveLength(0);
  });

  it('exits 3 with a hint when no simulator runs at --sim (SIM_URL is the default)', async () => {
    const cli = runCliProcess(['send', 'text', 'hi'], { SIM_URL: 'http://127.0.0.1:9' });
    expect(await cli.exited).toBe(3);
    expect(cli.stderr()).toMatch(/cannot reach the simulator at http:\/\/127\.0\.0\.1:9.*pnpm sim serve/);
  });
});

describe('pnpm sim chat', () => {
  it('sends each line, runs the slash commands, prints replies as they arrive, and quits', async () => {
    const cli = runCliProcess(['chat', '--user', 'carol', '--mode', 'plain', '--sim', sim.url]);
    await cli.waitForOutput(/chatting as carol/);
    cli.proc.stdin.write('/follow\n');
    await cli.waitForOutput(/gateway: success/);
    cli.proc.stdin.write('早上好\n/click MENU_1\n');
    await cli.waitForOutput(/(gateway: success[\s\S]*){3}/);
    expect(await worker.send({ touser: openidFor(ACCOUNT, 'carol'), msgtype: 'msgmenu', msgmenu: { head_content: '满意吗?', list: [{ id: '101', content: '满意' }], tail_content: '谢谢' } })).toEqual(expect.objectContaining({ errcode: 0 }));
    await cli.waitForOutput(/bot: 满意吗\?\n {2}\[101\] 满意\n {2}谢谢/);
    cli.proc.stdin.write('/quit\n');
    expect(await cli.exited).toBe(0);
    expect([0, 1, 2].map((i) => received(i))).toMatchObject([
      { kind: 'event', event: 'subscribe' },
      { kind: 'text', content: '早上好' },
      { kind: 'event', event: 'CLICK', eventKey: 'MENU_1' },
    ]);
  });
});

describe('pnpm sim serve', () => {
  it('starts a simulator from the environment and stops on SIGTERM', async () => {
    const cli = runCliProcess(['serve'], {
      SIM_GATEWAY_URL: gateway.url,
      WECHAT_TOKEN: TOKEN,
      WECHAT_APP_ID: APP.appId,
      WECHAT_APP_SECRET: APP.appSecret,
      SIM_MODE: 'plain',
      SIM_PORT: '0',
    });
    await cli.waitForOutput(/simulator listening on (http:\/\/\S+) /);
    const url = /simulator listening on (http:\/\/\S+) /.exec(cli.stdout())![1]!;
    const res = await fetch(`${url}/sim/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'eve', message: { type: 'text', content: 'via serve' } }) });
    expect(await res.json()).toMatchObject({ outcome: 'ack' });
    expect(received(0)).toMatchObject({ kind: 'text', content: 'via serve' });
    cli.proc.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
  });

  it('bound to every interface (as in a container), prints a URL a browser can open, or SIM_PUBLIC_URL', async () => {
    const identity = { SIM_GATEWAY_URL: gateway.url, WECHAT_TOKEN: TOKEN, WECHAT_APP_ID: APP.appId, WECHAT_APP_SECRET: APP.appSecret, SIM_PORT: '0' };
    const wildcard = runCliProcess(['serve'], { ...identity, SIM_HOST: '0.0.0.0' });
    await wildcard.waitForOutput(/simulator listening on (http:\/\/\S+) /);
    const url = /simulator listening on (http:\/\/\S+) /.exec(wildcard.stdout())![1]!;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(wildcard.stdout()).toContain(`chat page ${url}/ (bound to http://0.0.0.0:`);
    expect(wildcard.stdout()).not.toMatch(/listening on http:\/\/0\.0\.0\.0/);
    expect((await fetch(`${url}/`)).ok).toBe(true);

    const published = runCliProcess(['serve'], { ...identity, SIM_HOST: '0.0.0.0', SIM_PUBLIC_URL: 'http://localhost:4400/' });
    await published.waitForOutput(/simulator listening on/);
    expect(published.stdout()).toContain('simulator listening on http://localhost:4400 — chat page http://localhost:4400/ (bound to http://0.0.0.0:');

    const bad = runCliProcess(['serve'], { ...identity, SIM_PUBLIC_URL: 'localhost:4400' });
    expect(await bad.exited).toBe(2);
    expect(bad.stderr()).toContain('SIM_PUBLIC_URL must be an http(s) URL');
    for (const cli of [wildcard, published]) cli.proc.kill('SIGTERM');
    expect(await Promise.all([wildcard.exited, published.exited])).toEqual([0, 0]);
  });

  it('lists every missing variable at once', async () => {
    const cli = runCliProcess(['serve'], { SIM_MODE: 'safe' });
    expect(await cli.exited).toBe(2);
    for (const name of ['WECHAT_TOKEN', 'WECHAT_APP_ID', 'WECHAT_APP_SECRET', 'SIM_MODE=safe needs WECHAT_ENCODING_AES_KEY']) {
      expect(cli.stderr()).toContain(name);
    }
  });
});

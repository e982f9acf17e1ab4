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
    expect(cli.stdout()).toContain('gateway: passive reply on attempt 1 (HTTP 200, 1 try)\nbot (passive · attempt 1): [news] 标题 — 描述 <https://x.test/a>');
  });

  it('labels a placeholder, says which try got it, and lists the tries before it', async () => {
    const quick = await startSimulator({ gatewayUrl: gateway.url, token: TOKEN, ...APP, mode: 'plain', account: ACCOUNT, timeoutMs: 300 });
    try {
      const placeholder = buildReplyXml({ kind: 'text', content: '正在思考中，回复任意文字获取回答' }, { toUserName: openidFor(ACCOUNT, 'alice'), fromUserName: ACCOUNT, createTime: 1 });
      gateway.script('hang', 'hang', { body: placeholder, headers: { 'x-wxrelay-reply': 'placeholder', 'x-wxrelay-attempt': '3' } });
      const cli = runCliProcess(['send', 'text', '难题', '--sim', quick.url, '--wait', '0']);
      expect(await cli.exited).toBe(0);
      const out = cli.stdout();
      expect(out).toContain("gateway: placeholder on attempt 3 (HTTP 200, 3 tries) — the answer waits for the user's next message\n");
      expect(out).toMatch(/\n {2}try 1 \(\+0\.0 s\): cut after 0\.\d s \(no answer within 300 ms\)\n {2}try 2 \(\+0\.\d s\): cut after 0\.\d s \(no answer within 300 ms\)\n {2}try 3 \(\+0\.\d s\): passive reply\n/);
      expect(out).toContain('bot (placeholder · attempt 3): 正在思考中，回复任意文字获取回答');
    } finally {
      await quick.close();
    }
  });

  it('says so when the account is unverified and the worker’s customer-service message is refused (48001)', async () => {
    const locked = await startSimulator({ gatewayUrl: gateway.url, token: TOKEN, ...APP, mode: 'plain', account: ACCOUNT, unverified: true });
    try {
      const lockedWorker = createWorkerStandIn(locked.url, APP);
      const alice = openidFor(ACCOUNT, 'alice');
      gateway.script(async () => {
        expect(await lockedWorker.send({ touser: alice, msgtype: 'text', text: { content: 'never shown' } })).toMatchObject({ errcode: 48001 });
        return { body: 'success' };
      });
      const cli = runCliProcess(['send', 'text', 'hi', '--sim', locked.url, '--wait', '1']);
      expect(await cli.exited).toBe(0);
      expect(cli.stdout()).toContain("gateway: success (HTTP 200, 1 try)\nbot's customer-service message (text) refused: 48001 api unauthorized (unverified account)");
      expect(cli.stdout()).not.toContain('never shown');
      expect(locked.api.unauthorized).toHaveLength(1);
    } finally {
      await locked.close();
    }
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
    const cli = runCliProcess(['serve'], { SIM_MODE: 'safe', SIM_UNVERIFIED: 'maybe', REPLY_MODE: 'sometimes' });
    expect(await cli.exited).toBe(2);
    for (const name of [
      'WECHAT_TOKEN',
      'WECHAT_APP_ID',
      'WECHAT_APP_SECRET',
      'SIM_MODE=safe needs WECHAT_ENCODING_AES_KEY',
      'SIM_UNVERIFIED must be true or false (got "maybe")',
      'REPLY_MODE must be customer-service, passive, auto (got "sometimes")',
    ]) {
      expect(cli.stderr()).toContain(name);
    }
  });

  it.each([
    ['--unverified', ['serve', '--unverified'], {}],
    ['SIM_UNVERIFIED=true', ['serve'], { SIM_UNVERIFIED: 'true' }],
  ])('%s plays an unverified account, and says so with the reply mode', async (_how, args, extra) => {
    const cli = runCliProcess(args, {
      SIM_GATEWAY_URL: gateway.url,
      WECHAT_TOKEN: TOKEN,
      WECHAT_APP_ID: APP.appId,
      WECHAT_APP_SECRET: APP.appSecret,
      SIM_PORT: '0',
      REPLY_MODE: 'passive',
      ...extra,
    });
    await cli.waitForOutput(/unverified account: custom\/send and custom\/typing answer 48001/);
    expect(cli.stdout()).toContain('  reply mode (REPLY_MODE): passive\n');
    const url = /simulator listening on (http:\/\/\S+) /.exec(cli.stdout())![1]!;
    expect(await (await fetch(`${url}/sim/config`)).json()).toMatchObject({ unverified: true, replyMode: 'passive' });
    const served = createWorkerStandIn(url, APP);
    expect(await served.send({ touser: openidFor(ACCOUNT, 'x'), msgtype: 'text', text: { content: 'x' } })).toMatchObject({ errcode: 48001 });
    expect(await (await fetch(`${url}/sim/api-calls`)).json()).toMatchObject({ deliveries: 0, unauthorized: { send: 1 } });
    cli.proc.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
  });

  it('without either, the account is verified and no reply mode is claimed', async () => {
    const cli = runCliProcess(['serve'], { SIM_GATEWAY_URL: gateway.url, WECHAT_TOKEN: TOKEN, WECHAT_APP_ID: APP.appId, WECHAT_APP_SECRET: APP.appSecret, SIM_PORT: '0', SIM_UNVERIFIED: 'false' });
    await cli.waitForOutput(/point the worker at it/);
    expect(cli.stdout()).not.toMatch(/unverified|reply mode/);
    const url = /simulator listening on (http:\/\/\S+) /.exec(cli.stdout())![1]!;
    const config = (await (await fetch(`${url}/sim/config`)).json()) as Record<string, unknown>;
    expect(config.unverified).toBe(false);
    expect(config).not.toHaveProperty('replyMode');
    cli.proc.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
  });

  it('--unverified belongs to serve: send and chat refuse it', async () => {
    const cli = runCliProcess(['send', 'text', 'hi', '--unverified', '--sim', sim.url]);
    expect(await cli.exited).toBe(2);
    expect(cli.stderr()).toContain('--unverified is an option of sim serve');
    expect(gateway.requests).toHaveLength(0);
  });
});

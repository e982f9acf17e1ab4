import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildEncryptedReply,
  buildReplyXml,
  decryptMessage,
  deriveAesKey,
  parseInboundMessage,
  parseXml,
  type InboundMessage,
} from '@wxrelay/shared';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from './simulator-server.js';
import { startStubGateway, type StubAnswer, type StubGateway, type StubRequest } from './test-support/stub-gateway.js';
import { createWorkerStandIn, type WorkerStandIn } from './test-support/worker-stand-in.js';

const CHROMIUM = '/usr/bin/chromium';
const APP = { appId: 'wx5823bf96d3bd56c7', appSecret: '0123456789abcdef0123456789abcdef' } as const;
const TOKEN = 'wxrelaytoken';
const AES_KEY = 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C';
const KEY = deriveAesKey(AES_KEY);
const ACCOUNT = 'gh_0123456789ab';
const SCREENSHOT = '/tmp/wxrelay-sim-chat.png';
const WELCOME = '欢迎关注 wxrelay!\n发送任意文字开始聊天。';

let gateway: StubGateway;
let sim: Simulator;
let worker: WorkerStandIn;
let context: BrowserContext;
let page: Page;
let userDataDir: string;
/** Released by the test: the worker's reply to "slow" waits for it, so the typing state is visible. */
let releaseSlow: () => void = () => undefined;
const received: InboundMessage[] = [];

/** Opens a safe-mode push the way a gateway does. */
function openPush(request: StubRequest): InboundMessage {
  const encrypt = parseXml(request.body)['Encrypt'] as string;
  return parseInboundMessage(decryptMessage(KEY, encrypt, APP.appId).message);
}

/**
 * A gateway with a worker behind it: acks every push and lets the worker answer through the
 * customer-service API afterwards, except "passive", answered in the callback itself (encrypted).
 */
function gatewayWithWorker(request: StubRequest): StubAnswer {
  const message = openPush(request);
  received.push(message);
  const to = message.fromUserName;
  if (message.kind === 'text' && message.content === 'passive') {
    const replyXml = buildReplyXml({ kind: 'text', content: '被动回复 (passive)' }, { toUserName: to, fromUserName: ACCOUNT, createTime: message.createTime });
    return { body: buildEncryptedReply({ token: TOKEN, key: KEY, appId: APP.appId, replyXml, timestamp: String(message.createTime), nonce: '42' }) };
  }
  void answerLater(message, to);
  return { body: 'success' };
}

async function answerLater(message: InboundMessage, to: string): Promise<void> {
  const text = (content: string): Promise<unknown> => worker.send({ touser: to, msgtype: 'text', text: { content } });
  if (message.kind === 'event' && message.event === 'subscribe') return void (await text(WELCOME));
  if (message.kind === 'event' && message.event === 'CLICK') return void (await text(`菜单 ${message.eventKey}: 帮助`));
  if (message.kind !== 'text') return;
  if (message.bizmsgmenuid !== undefined) return void (await text(`谢谢你的评价: ${message.content} (#${message.bizmsgmenuid})`));
  switch (message.content) {
    case 'slow':
      await worker.typing(to, 'Typing');
      await new Promise<void>((resolve) => (releaseSlow = resolve));
      await text('慢慢来的回答');
      return;
    case 'rich':
      await text('第一行\n第二行 <a href="https://example.com/docs">文档</a> <a href="javascript:alert(1)">bad</a> <img src=x onerror="document.body.dataset.pwned=1">');
      await worker.send({ touser: to, msgtype: 'news', news: { articles: [{ title: '新闻标题', description: '新闻描述', url: 'https://example.com/news' }] } });
      await worker.send({ touser: to, msgtype: 'image', image: { media_id: 'MEDIA_123' } });
      await worker.send({
        touser: to,
        msgtype: 'msgmenu',
        msgmenu: { head_content: '您满意吗?', list: [{ id: '101', content: '满意' }, { id: '102', content: '不满意' }], tail_content: '欢迎再来' },
      });
      return;
    default:
      await text(`echo: ${message.content}`);
  }
}

function phone(user: string): Locator {
  return page.locator(`.phone[data-user="${user}"]`);
}

function botMessages(user: string, source?: 'passive' | 'customer-service'): Locator {
  return phone(user).locator(source === undefined ? '.msg.bot' : `.msg.bot[data-source="${source}"]`);
}

async function say(user: string, text: string): Promise<void> {
  await phone(user).locator('.compose .text').fill(text);
  await phone(user).locator('.compose .text').press('Enter');
}

/** Polls until `check` passes (Playwright's auto-waiting, with vitest's matchers). */
async function eventually(check: () => Promise<void>, timeoutMs = 15_000): Promise<void> {
  await expect.poll(async () => (await check().then(() => true, (err: unknown) => String(err))), { timeout: timeoutMs, interval: 50 }).toBe(true);
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is needed for the chat page test and was not found at ${CHROMIUM}: install it with \`apt-get install -y chromium\` (CI does).`);
  }
  gateway = await startStubGateway();
  gateway.script(gatewayWithWorker);
  sim = await startSimulator({ gatewayUrl: gateway.url, token: TOKEN, ...APP, encodingAesKey: AES_KEY, mode: 'safe', account: ACCOUNT });
  worker = createWorkerStandIn(sim.url, APP);
  userDataDir = await mkdtemp(join(tmpdir(), 'wxrelay-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 760 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`${sim.url}/?users=alice,bob`);
  await page.locator('body[data-ready="true"]').waitFor();
}, 60_000);

afterAll(async () => {
  releaseSlow();
  await context?.close();
  await sim?.close();
  await gateway?.close();
  if (userDataDir !== undefined) await rm(userDataDir, { recursive: true, force: true });
});

describe('the chat page in a real Chromium', () => {
  it('shows one phone per user with the account in the header', async () => {
    await expect.poll(() => page.locator('.phone').count()).toBe(2);
    expect(await page.locator('#account').textContent()).toContain(`${ACCOUNT} · safe mode`);
  });

  it('Follow sends subscribe; the welcome the worker sends appears, newlines kept', async () => {
    await phone('alice').locator('button.follow').click();
    await phone('alice').locator('.msg.system', { hasText: 'You followed' }).waitFor();
    const welcome = botMessages('alice', 'customer-service').first();
    await welcome.waitFor();
    expect(await welcome.locator('.bubble').innerText()).toBe(WELCOME);
    expect(received.at(-1)).toMatchObject({ kind: 'event', event: 'subscribe' });
    expect(await phone('alice').locator('.msg.system .meta').first().textContent()).toBe('✓ success');
  });

  it('a typed text goes to the gateway and the reply appears under it', async () => {
    await say('alice', '你好');
    await phone('alice').locator('.msg.me', { hasText: '你好' }).waitFor();
    await botMessages('alice').filter({ hasText: 'echo: 你好' }).waitFor();
    expect(received.at(-1)).toMatchObject({ kind: 'text', content: '你好' });
  });

  it('shows the typing indicator while the worker is typing, and hides it with the reply', async () => {
    const typing = phone('alice').locator('.typing');
    expect(await typing.isVisible()).toBe(false);
    await say('alice', 'slow');
    await typing.waitFor({ state: 'visible' });
    releaseSlow();
    await botMessages('alice').filter({ hasText: '慢慢来的回答' }).waitFor();
    await typing.waitFor({ state: 'hidden' });
  });

  it('shows a passive reply, decrypted, marked as passive', async () => {
    await say('alice', 'passive');
    const passive = botMessages('alice', 'passive').filter({ hasText: '被动回复 (passive)' });
    await passive.waitFor();
    expect(await passive.locator('.meta').textContent()).toBe('passive reply');
  });

  it('renders links safely, news as a card, media by id, and msgmenu as buttons that answer with bizmsgmenuid', async () => {
    await say('alice', 'rich');
    const menu = botMessages('alice').filter({ has: page.locator('.menu-options') });
    await menu.waitFor();
    const rich = botMessages('alice').filter({ hasText: '第一行' });
    const links = rich.locator('a');
    expect(await links.count()).toBe(1);
    expect(await links.first().getAttribute('href')).toBe('https://example.com/docs');
    expect(await links.first().textContent()).toBe('文档');
    expect(await rich.locator('img').count()).toBe(0);
    expect(await rich.locator('.bubble').innerText()).toContain('<img src=x onerror=');
    expect(await rich.locator('.bubble').innerText()).toContain('<a href="javascript:alert(1)">bad</a>');
    expect(await page.locator('body').getAttribute('data-pwned')).toBeNull();

    const news = botMessages('alice').filter({ hasText: '新闻标题' });
    expect(await news.getAttribute('data-msgtype')).toBe('news');
    expect(await news.locator('.card-desc').textContent()).toBe('新闻描述');
    expect(await news.locator('a').getAttribute('href')).toBe('https://example.com/news');
    expect(await botMessages('alice').filter({ hasText: 'MEDIA_123' }).getAttribute('data-msgtype')).toBe('image');

    expect(await menu.locator('.menu-head').textContent()).toBe('您满意吗?');
    await menu.locator('button', { hasText: '不满意' }).click();
    await botMessages('alice').filter({ hasText: '谢谢你的评价: 不满意 (#102)' }).waitFor();
    expect(received.at(-1)).toMatchObject({ kind: 'text', content: '不满意', bizmsgmenuid: '102' });
  });

  it('Menu click sends CLICK with the key typed', async () => {
    await phone('alice').locator('.menu-key').fill('MENU_HELP');
    await phone('alice').locator('button.click').click();
    await botMessages('alice').filter({ hasText: '菜单 MENU_HELP: 帮助' }).waitFor();
    expect(received.at(-1)).toMatchObject({ kind: 'event', event: 'CLICK', eventKey: 'MENU_HELP' });
  });

  it('keeps two users side by side with separate histories', async () => {
    await say('bob', 'hi from bob');
    await botMessages('bob').filter({ hasText: 'echo: hi from bob' }).waitFor();
    const bobText = await phone('bob').locator('.messages').innerText();
    const aliceText = await phone('alice').locator('.messages').innerText();
    expect(bobText).not.toContain('你好');
    expect(bobText).not.toContain('欢迎关注');
    expect(aliceText).not.toContain('hi from bob');
    expect(received.at(-1)!.fromUserName).not.toBe(received[0]!.fromUserName);
    const box = async (user: string) => (await phone(user).boundingBox())!;
    expect((await box('bob')).x).toBeGreaterThan((await box('alice')).x + (await box('alice')).width - 1);
  });

  it('shows replies to pushes made elsewhere (the CLI) and Unfollow', async () => {
    await sim.send({ user: 'bob', message: { type: 'location', latitude: '23.1', longitude: '113.3', label: '广州塔' } });
    await phone('bob').locator('.msg.me[data-msgtype="location"]', { hasText: '广州塔' }).waitFor();
    await phone('bob').locator('button.unfollow').click();
    await phone('bob').locator('.msg.system', { hasText: 'You unfollowed' }).waitFor();
    await eventually(() => {
      expect(received.at(-1)).toMatchObject({ kind: 'event', event: 'unsubscribe' });
      return Promise.resolve();
    });
  });

  it('adds a user with the Add user button', async () => {
    await page.locator('#new-user').fill('carol');
    await page.locator('#add-user button').click();
    await phone('carol').waitFor();
    await say('carol', 'carol here');
    await botMessages('carol').filter({ hasText: 'echo: carol here' }).waitFor();
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
  });
});

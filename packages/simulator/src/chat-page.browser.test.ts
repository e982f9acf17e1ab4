import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildEncryptedReply,
  buildReplyXml,
  decryptMessage,
  dedupKey,
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
/** Released by the test: the third try of "think" waits for it, so the tries before are visible. */
let releaseThink: () => void = () => undefined;
const received: InboundMessage[] = [];
/** WeChat's tries per pushed MsgId, as the gateway saw them. */
const triesSeen = new Map<string, number>();
/**
 * The simulator's per-try timeout here: short, so the tests of answers on later tries stay short
 * (the 5 s itself is pinned in callback-client.test.ts).
 */
const TRY_TIMEOUT_MS = 1500;

/** Opens a safe-mode push the way a gateway does. */
function openPush(request: StubRequest): InboundMessage {
  const encrypt = parseXml(request.body)['Encrypt'] as string;
  return parseInboundMessage(decryptMessage(KEY, encrypt, APP.appId).message);
}

/** A passive text reply to `message`, encrypted as the gateway does in safe mode, with wxrelay's labels when given. */
function passiveAnswer(message: InboundMessage, content: string, labels?: { kind: 'answer' | 'placeholder'; attempt: number }): StubAnswer {
  const replyXml = buildReplyXml({ kind: 'text', content }, { toUserName: message.fromUserName, fromUserName: ACCOUNT, createTime: message.createTime });
  return {
    body: buildEncryptedReply({ token: TOKEN, key: KEY, appId: APP.appId, replyXml, timestamp: String(message.createTime), nonce: '42' }),
    contentType: 'application/xml; charset=utf-8',
    ...(labels === undefined ? {} : { headers: { 'x-wxrelay-reply': labels.kind, 'x-wxrelay-attempt': String(labels.attempt) } }),
  };
}

/**
 * A gateway with a worker behind it: acks every push and lets the worker answer through the
 * customer-service API afterwards, except those answered in the callback itself (encrypted):
 * "passive" at once (no wxrelay labels), "passive-2" on WeChat's second try (the first lapses),
 * "think" with wxrelay's placeholder on the third try, once the test releases it.
 */
async function gatewayWithWorker(request: StubRequest): Promise<StubAnswer> {
  const message = openPush(request);
  const key = dedupKey(message);
  const attempt = (triesSeen.get(key) ?? 0) + 1;
  triesSeen.set(key, attempt);
  if (attempt === 1) received.push(message);
  if (message.kind === 'text' && message.content === 'passive') return passiveAnswer(message, '被动回复 (passive)');
  if (message.kind === 'text' && message.content === 'passive-2') {
    return attempt < 2 ? 'hang' : passiveAnswer(message, '第二次才答上', { kind: 'answer', attempt });
  }
  if (message.kind === 'text' && message.content === 'think') {
    if (attempt < 3) return 'hang';
    await new Promise<void>((resolve) => (releaseThink = resolve));
    return passiveAnswer(message, '正在思考中，回复任意文字获取回答', { kind: 'placeholder', attempt });
  }
  void answerLater(message, message.fromUserName);
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
  sim = await startSimulator({ gatewayUrl: gateway.url, token: TOKEN, ...APP, encodingAesKey: AES_KEY, mode: 'safe', account: ACCOUNT, replyMode: 'auto', timeoutMs: TRY_TIMEOUT_MS });
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
  releaseThink();
  await context?.close();
  await sim?.close();
  await gateway?.close();
  if (userDataDir !== undefined) await rm(userDataDir, { recursive: true, force: true });
});

describe('the chat page in a real Chromium', () => {
  it('shows one phone per user with the account in the header', async () => {
    await expect.poll(() => page.locator('.phone').count()).toBe(2);
    expect(await page.locator('#account').textContent()).toContain(`${ACCOUNT} · safe mode`);
    expect(await page.locator('#reply-mode').textContent()).toBe('REPLY_MODE auto');
    expect(await page.locator('#reply-mode').isVisible()).toBe(true);
    expect(await page.locator('#unverified').isVisible()).toBe(false);
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

  it('shows a passive reply, decrypted, marked as passive with the try that got it', async () => {
    await say('alice', 'passive');
    const passive = botMessages('alice', 'passive').filter({ hasText: '被动回复 (passive)' });
    await passive.waitFor();
    expect(await passive.locator('.meta').textContent()).toBe('passive · attempt 1');
    expect(await passive.getAttribute('data-reply-kind')).toBe('answer');
    expect(await phone('alice').locator('.msg.me', { hasText: /^passive/ }).locator('.meta').textContent()).toBe('✓ passive reply');
  });

  it('a passive answer on WeChat’s second try: labelled "passive · attempt 2", the message marked answered after 2 tries', async () => {
    await say('alice', 'passive-2');
    const answer = botMessages('alice', 'passive').filter({ hasText: '第二次才答上' });
    await answer.waitFor({ timeout: 3 * TRY_TIMEOUT_MS + 5000 });
    expect(await answer.locator('.meta').textContent()).toBe('passive · attempt 2');
    expect(await answer.getAttribute('data-attempt')).toBe('2');
    expect(await phone('alice').locator('.msg.me', { hasText: 'passive-2' }).locator('.meta').textContent()).toBe('✓ passive reply after 2 tries');
  });

  it('shows each lapsed try while WeChat retries, then a placeholder labelled as one', async () => {
    await say('alice', 'think');
    const mine = phone('alice').locator('.msg.me', { hasText: 'think' }).locator('.meta');
    await expect.poll(() => mine.textContent(), { timeout: 3 * TRY_TIMEOUT_MS + 5000, interval: 50 }).toMatch(/^sending \(safe\)… try 2 cut after \d+\.\d s, WeChat tries again$/);
    releaseThink();
    const placeholder = botMessages('alice', 'passive').filter({ hasText: '正在思考中' });
    await placeholder.waitFor();
    expect(await placeholder.locator('.meta').textContent()).toBe('placeholder · attempt 3');
    expect(await placeholder.getAttribute('data-reply-kind')).toBe('placeholder');
    expect(await mine.textContent()).toBe('✓ placeholder after 3 tries');
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

describe('the chat page of an unverified account (REPLY_MODE passive)', () => {
  let plainGateway: StubGateway;
  let unverified: Simulator;
  let unverifiedPage: Page;
  let standIn: WorkerStandIn;

  beforeAll(async () => {
    // A gateway that acks, and a worker still trying the customer-service API behind it.
    plainGateway = await startStubGateway();
    plainGateway.script((request) => {
      const message = parseInboundMessage(request.body);
      if (message.kind === 'text') {
        void standIn.typing(message.fromUserName, 'Typing');
        void standIn.send({ touser: message.fromUserName, msgtype: 'text', text: { content: `echo: ${message.content}` } });
      }
      return { body: 'success' };
    });
    unverified = await startSimulator({ gatewayUrl: plainGateway.url, token: TOKEN, ...APP, mode: 'plain', account: ACCOUNT, unverified: true, replyMode: 'passive' });
    standIn = createWorkerStandIn(unverified.url, APP);
    unverifiedPage = await context.newPage();
    await unverifiedPage.goto(`${unverified.url}/?users=dora`);
    await unverifiedPage.locator('body[data-ready="true"]').waitFor();
  });

  afterAll(async () => {
    await unverifiedPage?.close();
    await unverified?.close();
    await plainGateway?.close();
  });

  it('says so in the header, with the reply mode', async () => {
    expect(await unverifiedPage.locator('#reply-mode').textContent()).toBe('REPLY_MODE passive');
    expect(await unverifiedPage.locator('#unverified').isVisible()).toBe(true);
  });

  it('shows a refused customer-service message as 48001, and delivers nothing', async () => {
    const dora = unverifiedPage.locator('.phone[data-user="dora"]');
    await dora.locator('.compose .text').fill('hello?');
    await dora.locator('.compose .text').press('Enter');
    const refusal = dora.locator('.msg.system.unauthorized');
    await refusal.waitFor();
    expect(await refusal.locator('.bubble').textContent()).toBe('customer-service message (text) refused: 48001 api unauthorized (unverified account)');
    expect(await dora.locator('.msg.bot').count()).toBe(0);
    // The refused typing call is counted, not shown.
    await expect.poll(() => unverified.api.unauthorized.length).toBe(2);
    expect(await dora.locator('.msg.system.unauthorized').count()).toBe(1);
    expect(await dora.locator('.typing').isVisible()).toBe(false);
    expect(unverified.api.deliveries).toHaveLength(0);
  });
});

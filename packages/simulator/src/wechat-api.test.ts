import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadCustomerServiceVectors } from './test-support/customer-service-vectors.js';
import { startFakeWechatApi, type FakeWechatApi, type FakeWechatApiOptions } from './wechat-api.js';

const APP = { appId: 'wx0123456789abcdef', appSecret: '0123456789abcdef0123456789abcdef' } as const;
const T0 = Date.UTC(2025, 0, 1, 8, 0, 0);
const MIN = 60_000;
const HOUR = 60 * MIN;
const RID = / rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$/;
const SEND = '/cgi-bin/message/custom/send';
const TYPING = '/cgi-bin/message/custom/typing';

/** A request body. */
type Body = Record<string, unknown>;

/** Any answer of the fake (or `{ text }` for a non-JSON one). */
interface WxAnswer {
  errcode?: number;
  errmsg?: string;
  access_token?: string;
  expires_in?: number;
  type?: string;
  media_id?: string;
  created_at?: number;
  text?: string;
}

function contentOf(delivery: { body: Body }): unknown {
  return (delivery.body.text as { content?: unknown } | undefined)?.content;
}

let clock = T0;
let api: FakeWechatApi;
const started: FakeWechatApi[] = [];

async function start(options: Partial<FakeWechatApiOptions> = {}): Promise<FakeWechatApi> {
  const instance = await startFakeWechatApi({ ...APP, now: () => clock, ...options });
  started.push(instance);
  return instance;
}

beforeEach(async () => {
  clock = T0;
  api = await start();
});

afterEach(async () => {
  await Promise.all(started.splice(0).map((instance) => instance.close()));
});

async function getToken(params: Record<string, string> = {}, target = api): Promise<WxAnswer> {
  const query = new URLSearchParams({ grant_type: 'client_credential', appid: APP.appId, secret: APP.appSecret, ...params });
  const res = await fetch(`${target.url}/cgi-bin/token?${query.toString()}`);
  expect(res.status).toBe(200);
  return (await res.json()) as WxAnswer;
}

async function postRaw(path: string, query: string, body?: string): Promise<{ status: number; json: WxAnswer }> {
  const res = await fetch(`${api.url}${path}${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body }),
  });
  const text = await res.text();
  return { status: res.status, json: res.headers.get('content-type')?.includes('json') ? (JSON.parse(text) as WxAnswer) : { text } };
}

async function stableToken(body: Body = {}): Promise<WxAnswer> {
  const full = { grant_type: 'client_credential', appid: APP.appId, secret: APP.appSecret, force_refresh: false, ...body };
  const { status, json } = await postRaw('/cgi-bin/stable_token', '', JSON.stringify(full));
  expect(status).toBe(200);
  return json;
}

async function freshToken(): Promise<string> {
  const json = await getToken();
  if (json.access_token === undefined) throw new Error(`no token: ${JSON.stringify(json)}`);
  return json.access_token;
}

async function send(token: string, body: Body | string): Promise<WxAnswer> {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  const { status, json } = await postRaw(SEND, `?access_token=${encodeURIComponent(token)}`, raw);
  expect(status).toBe(200);
  return json;
}

function text(touser: string, content: string): Body {
  return { touser, msgtype: 'text', text: { content } };
}

describe('GET /cgi-bin/token', () => {
  it('issues a long random token with expires_in 7200 and records the fetch', async () => {
    const json = await getToken();
    expect(json.expires_in).toBe(7200);
    expect(json.access_token).toMatch(/^[A-Za-z0-9_-]{64,}$/);
    expect(json.errcode).toBeUndefined();
    expect(api.tokenFetches).toEqual([{ endpoint: 'token', forceRefresh: false, at: T0 }]);
    expect(api.calls).toEqual([{ path: '/cgi-bin/token', errcode: 0, httpStatus: 200, at: T0 }]);
  });

  it('honours tokenTtlSeconds', async () => {
    const short = await start({ tokenTtlSeconds: 60 });
    expect((await getToken({}, short)).expires_in).toBe(60);
  });

  it.each<{ title: string; params: Record<string, string>; errcode: number; errmsg: string }>([
    { title: 'wrong grant_type', params: { grant_type: 'password' }, errcode: 40002, errmsg: 'invalid grant_type' },
    { title: 'wrong appid', params: { appid: 'wxffffffffffffffff' }, errcode: 40013, errmsg: 'invalid appid' },
    { title: 'wrong secret', params: { secret: 'nope' }, errcode: 40125, errmsg: 'invalid appsecret' },
    { title: 'missing appid', params: { appid: '' }, errcode: 41002, errmsg: 'appid missing' },
  ])('$title → $errcode with a rid suffix', async ({ params, errcode, errmsg }) => {
    const json = await getToken(params);
    expect(json.errcode).toBe(errcode);
    expect(json.errmsg).toMatch(RID);
    expect(json.errmsg?.startsWith(errmsg)).toBe(true);
    expect(json.access_token).toBeUndefined();
    expect(api.calls.at(-1)?.errcode).toBe(errcode);
  });

  it('issues a new token per call; the previous one works for 5 more minutes, then 40001', async () => {
    const first = await freshToken();
    clock += 10 * MIN;
    const second = await freshToken();
    expect(second).not.toBe(first);
    clock += 5 * MIN - 1;
    expect(await send(first, text('u', 'hi'))).toMatchObject({ errcode: 45015 }); // token accepted, no window
    clock += 1;
    expect((await send(first, text('u', 'hi'))).errcode).toBe(40001);
    expect((await send(second, text('u', 'hi'))).errcode).toBe(45015);
  });

  it('a token answers 42001 once its lifetime is over', async () => {
    const token = await freshToken();
    clock += 7200 * 1000 - 1;
    expect((await send(token, text('u', 'hi'))).errcode).toBe(45015);
    clock += 1;
    const json = await send(token, text('u', 'hi'));
    expect(json.errcode).toBe(42001);
    expect(json.errmsg).toMatch(/^access_token expired rid: /);
  });
});

describe('POST /cgi-bin/stable_token', () => {
  it('returns the same token while valid, with a shrinking expires_in', async () => {
    const first = await stableToken();
    expect(first.access_token).toMatch(/^[A-Za-z0-9_-]{64,}$/);
    expect(first.expires_in).toBe(7200);
    clock += 1000 * 1000;
    const second = await stableToken();
    expect(second.access_token).toBe(first.access_token);
    expect(second.expires_in).toBe(6200);
    expect(api.tokenFetches.map((f) => f.endpoint)).toEqual(['stable_token', 'stable_token']);
  });

  it('renews 5 minutes before expiry; the old token keeps working until its own expiry', async () => {
    const old = (await stableToken()).access_token as string;
    clock += 7200 * 1000 - 5 * MIN;
    const renewed = await stableToken();
    expect(renewed.access_token).not.toBe(old);
    expect(renewed.expires_in).toBe(7200);
    clock += 5 * MIN - 1;
    expect((await send(old, text('u', 'x'))).errcode).toBe(45015);
    clock += 1;
    expect((await send(old, text('u', 'x'))).errcode).toBe(42001);
    expect((await send(renewed.access_token!, text('u', 'x'))).errcode).toBe(45015);
  });

  it('force_refresh invalidates the previous token, at most once per 30 s', async () => {
    const first = (await stableToken()).access_token as string;
    const forced = (await stableToken({ force_refresh: true })).access_token as string;
    expect(forced).not.toBe(first);
    expect((await send(first, text('u', 'x'))).errcode).toBe(40001);
    expect((await send(forced, text('u', 'x'))).errcode).toBe(45015);

    clock += 30_000 - 1;
    expect((await stableToken({ force_refresh: true })).access_token).toBe(forced);
    clock += 1;
    const again = (await stableToken({ force_refresh: true })).access_token as string;
    expect(again).not.toBe(forced);
    expect(api.tokenFetches.map((f) => f.forceRefresh)).toEqual([false, true, true, true]);
  });

  it('answers 45009 after 20 force refreshes within a day', async () => {
    for (let i = 0; i < 20; i += 1) {
      expect((await stableToken({ force_refresh: true })).access_token).toBeDefined();
      clock += 30_000;
    }
    expect((await stableToken({ force_refresh: true })).errcode).toBe(45009);
    clock += 24 * HOUR;
    expect((await stableToken({ force_refresh: true })).access_token).toBeDefined();
  });

  it('is isolated from /cgi-bin/token: refreshing one leaves the other valid', async () => {
    const stable = (await stableToken()).access_token as string;
    const plain = await freshToken();
    await freshToken();
    await stableToken({ force_refresh: true });
    clock += 6 * MIN;
    expect((await send(plain, text('u', 'x'))).errcode).toBe(40001);
    expect((await send(stable, text('u', 'x'))).errcode).toBe(40001);

    const stable2 = (await stableToken()).access_token as string;
    await freshToken();
    clock += 6 * MIN;
    expect((await send(stable2, text('u', 'x'))).errcode).toBe(45015);
  });

  it.each([
    { title: 'non-JSON body', body: 'grant_type=client_credential', errcode: 47001 },
    { title: 'empty body', body: '', errcode: 44002 },
    { title: 'force_refresh as a string', body: JSON.stringify({ grant_type: 'client_credential', appid: APP.appId, secret: APP.appSecret, force_refresh: 'true' }), errcode: 47001 },
    { title: 'wrong secret', body: JSON.stringify({ grant_type: 'client_credential', appid: APP.appId, secret: 'x' }), errcode: 40125 },
    { title: 'wrong appid', body: JSON.stringify({ grant_type: 'client_credential', appid: 'wx1', secret: APP.appSecret }), errcode: 40013 },
  ])('$title → $errcode', async ({ body, errcode }) => {
    const { status, json } = await postRaw('/cgi-bin/stable_token', '', body);
    expect(status).toBe(200);
    expect(json.errcode).toBe(errcode);
    expect(json.errmsg).toMatch(RID);
  });

  it('GET → 43002 require POST method', async () => {
    const json = (await (await fetch(`${api.url}/cgi-bin/stable_token`)).json()) as WxAnswer;
    expect(json.errcode).toBe(43002);
  });
});

describe('token invalidation by the test', () => {
  it('invalidateTokens: every issued token → 40001; a new one works', async () => {
    const plain = await freshToken();
    const stable = (await stableToken()).access_token as string;
    api.invalidateTokens();
    expect((await send(plain, text('u', 'x'))).errcode).toBe(40001);
    expect((await send(stable, text('u', 'x'))).errcode).toBe(40001);
    const renewed = (await stableToken()).access_token as string;
    expect(renewed).not.toBe(stable);
    expect((await send(renewed, text('u', 'x'))).errcode).toBe(45015);
    expect((await send(await freshToken(), text('u', 'x'))).errcode).toBe(45015);
  });

  it('expireTokens: every issued token → 42001', async () => {
    const plain = await freshToken();
    api.expireTokens();
    expect((await send(plain, text('u', 'x'))).errcode).toBe(42001);
    expect((await send(await freshToken(), text('u', 'x'))).errcode).toBe(45015);
  });

  it('missing access_token → 41001; unknown token → 40001', async () => {
    expect((await postRaw(SEND, '', JSON.stringify(text('u', 'x')))).json.errcode).toBe(41001);
    expect((await postRaw(SEND, '?access_token=', JSON.stringify(text('u', 'x')))).json.errcode).toBe(41001);
    const unknown = await send('A'.repeat(128), text('u', 'x'));
    expect(unknown.errcode).toBe(40001);
    expect(unknown.errmsg).toMatch(/^invalid credential, access_token is invalid or not latest rid: /);
  });
});

describe('POST /cgi-bin/message/custom/send: bodies', () => {
  const vectors = loadCustomerServiceVectors();
  let token: string;
  beforeEach(async () => {
    token = await freshToken();
    api.userInteracted('OPENID', 'message');
  });

  it.each(Object.entries(vectors.bodies))('accepts the %s vector and records the delivery', async (_name, body) => {
    const json = await send(token, body);
    expect(json).toEqual({ errcode: 0, errmsg: 'ok' });
    expect(api.deliveries).toEqual([{ touser: 'OPENID', msgtype: body.msgtype, body, at: T0 }]);
  });

  it.each([
    { title: 'touser missing', body: { msgtype: 'text', text: { content: 'x' } }, errcode: 40003 },
    { title: 'msgtype missing', body: { touser: 'OPENID', text: { content: 'x' } }, errcode: 40008 },
    { title: 'unknown msgtype', body: { touser: 'OPENID', msgtype: 'sticker', sticker: {} }, errcode: 40008 },
    { title: 'text object missing', body: { touser: 'OPENID', msgtype: 'text', content: 'x' }, errcode: 47001 },
    { title: 'text.content not a string', body: { touser: 'OPENID', msgtype: 'text', text: { content: 5 } }, errcode: 47001 },
    { title: 'text.content empty', body: text('OPENID', ''), errcode: 44004 },
    { title: 'image.media_id missing', body: { touser: 'OPENID', msgtype: 'image', image: {} }, errcode: 47001 },
    { title: 'image.media_id empty', body: { touser: 'OPENID', msgtype: 'image', image: { media_id: '' } }, errcode: 40007 },
    { title: 'voice.media_id missing', body: { touser: 'OPENID', msgtype: 'voice', voice: { mediaId: 'x' } }, errcode: 47001 },
    { title: 'video.media_id missing', body: { touser: 'OPENID', msgtype: 'video', video: { title: 't' } }, errcode: 47001 },
    { title: 'video.title not a string', body: { touser: 'OPENID', msgtype: 'video', video: { media_id: 'm', title: 1 } }, errcode: 47001 },
    { title: 'music.hqmusicurl missing', body: { touser: 'OPENID', msgtype: 'music', music: { musicurl: 'u', thumb_media_id: 't' } }, errcode: 47001 },
    { title: 'news.articles missing', body: { touser: 'OPENID', msgtype: 'news', news: {} }, errcode: 47001 },
    { title: 'news with no article', body: { touser: 'OPENID', msgtype: 'news', news: { articles: [] } }, errcode: 44003 },
    { title: 'news with 2 articles', body: { touser: 'OPENID', msgtype: 'news', news: { articles: [{ title: 'a' }, { title: 'b' }] } }, errcode: 45008 },
    { title: 'mpnews.media_id missing', body: { touser: 'OPENID', msgtype: 'mpnews', mpnews: {} }, errcode: 47001 },
    { title: 'mpnewsarticle.article_id missing', body: { touser: 'OPENID', msgtype: 'mpnewsarticle', mpnewsarticle: { media_id: 'm' } }, errcode: 47001 },
    { title: 'msgmenu.list missing', body: { touser: 'OPENID', msgtype: 'msgmenu', msgmenu: { head_content: 'h' } }, errcode: 47001 },
    { title: 'msgmenu item without id', body: { touser: 'OPENID', msgtype: 'msgmenu', msgmenu: { list: [{ content: 'c' }] } }, errcode: 47001 },
    { title: 'wxcard.card_id missing', body: { touser: 'OPENID', msgtype: 'wxcard', wxcard: {} }, errcode: 47001 },
    { title: 'miniprogrampage.pagepath missing', body: { touser: 'OPENID', msgtype: 'miniprogrampage', miniprogrampage: { title: 't', appid: 'a', thumb_media_id: 'm' } }, errcode: 47001 },
    { title: 'customservice without kf_account', body: { ...text('OPENID', 'x'), customservice: {} }, errcode: 47001 },
  ])('$title → $errcode, nothing delivered, no quota spent', async ({ body, errcode }) => {
    const json = await send(token, body);
    expect(json.errcode).toBe(errcode);
    expect(json.errmsg).toMatch(RID);
    expect(api.deliveries).toHaveLength(0);
    expect(api.sendWindow('OPENID')?.remaining).toBe(5);
  });

  it.each([
    { title: 'empty body', raw: '', errcode: 44002 },
    { title: 'invalid JSON', raw: '{"touser":', errcode: 47001 },
    { title: 'a JSON array', raw: '[1,2]', errcode: 47001 },
  ])('$title → $errcode', async ({ raw, errcode }) => {
    expect((await send(token, raw)).errcode).toBe(errcode);
  });

  it('no body at all → 44002', async () => {
    const res = await fetch(`${api.url}${SEND}?access_token=${token}`, { method: 'POST' });
    expect(((await res.json()) as WxAnswer).errcode).toBe(44002);
  });

  it('bytes that are not UTF-8 → 40033', async () => {
    const body = Buffer.concat([Buffer.from('{"touser":"OPENID","msgtype":"text","text":{"content":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}}')]);
    const res = await fetch(`${api.url}${SEND}?access_token=${token}`, { method: 'POST', body });
    expect(((await res.json()) as WxAnswer).errcode).toBe(40033);
  });

  it.each(['café', '你好', 'emoji 😀'])('a \\uXXXX escape in %j → 40033; the same text as raw UTF-8 is fine', async (content) => {
    const escaped = JSON.stringify(text('OPENID', content)).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    expect(escaped).toMatch(/\\u[0-9a-f]{4}/);
    const rejected = await send(token, escaped);
    expect(rejected.errcode).toBe(40033);
    expect(rejected.errmsg).toMatch(/^invalid charset/);
    expect(api.deliveries).toHaveLength(0);
    expect((await send(token, text('OPENID', content))).errcode).toBe(0);
    expect(api.deliveries[0] && contentOf(api.deliveries[0])).toBe(content);
  });

  it('ASCII escapes and an escaped backslash before "u00e9" are not rejected', async () => {
    expect((await send(token, '{"touser":"OPENID","msgtype":"text","text":{"content":"\\u0041\\n"}}')).errcode).toBe(0);
    expect((await send(token, '{"touser":"OPENID","msgtype":"text","text":{"content":"C:\\\\u00e9"}}')).errcode).toBe(0);
    expect(api.deliveries.map(contentOf)).toEqual(['A\n', 'C:\\u00e9']);
  });

  it('text content over 2048 UTF-8 bytes → 45002; exactly 2048 bytes passes', async () => {
    expect((await send(token, text('OPENID', 'a'.repeat(2048)))).errcode).toBe(0);
    expect((await send(token, text('OPENID', 'a'.repeat(2049)))).errcode).toBe(45002);
    // 683 CJK characters are 2049 bytes but only 683 UTF-16 units.
    const cjk = await send(token, text('OPENID', '字'.repeat(683)));
    expect(cjk.errcode).toBe(45002);
    expect(cjk.errmsg).toMatch(/^content size out of limit rid: /);
    expect(api.deliveries).toHaveLength(1);
  });

  it('maxTextBytes is configurable', async () => {
    const strict = await start({ maxTextBytes: 10, enforceWindow: false });
    const t = (await getToken({}, strict)).access_token as string;
    const res = await fetch(`${strict.url}${SEND}?access_token=${t}`, { method: 'POST', body: JSON.stringify(text('x', 'a'.repeat(11))) });
    expect(((await res.json()) as WxAnswer).errcode).toBe(45002);
  });

  it('GET → 43002', async () => {
    const json = (await (await fetch(`${api.url}${SEND}?access_token=${token}`)).json()) as WxAnswer;
    expect(json.errcode).toBe(43002);
  });
});

describe('POST /cgi-bin/message/custom/send: window and quota (docs/wechat-protocol.md §9.3)', () => {
  let token: string;
  beforeEach(async () => {
    token = await freshToken();
  });

  async function sendMany(openid: string, n: number): Promise<number[]> {
    const codes: number[] = [];
    for (let i = 0; i < n; i += 1) codes.push((await send(token, text(openid, `m${i}`))).errcode as number);
    return codes;
  }

  it('a user who never interacted → 45015', async () => {
    const json = await send(token, text('stranger', 'hi'));
    expect(json.errcode).toBe(45015);
    expect(json.errmsg).toMatch(/^response out of time limit or subscription is canceled rid: /);
  });

  it('a message grants 5 sends, then 45047', async () => {
    api.userInteracted('u1', 'message');
    expect(await sendMany('u1', 6)).toEqual([0, 0, 0, 0, 0, 45047]);
    expect(api.deliveries).toHaveLength(5);
    expect(api.sendWindow('u1')).toMatchObject({ trigger: 'message', remaining: 0 });
  });

  it('a message window closes after 48 hours → 45015', async () => {
    api.userInteracted('u1', 'message');
    clock += 48 * HOUR - 1;
    token = await freshToken(); // the first one expired long ago
    expect(await sendMany('u1', 1)).toEqual([0]);
    clock += 1;
    expect(await sendMany('u1', 1)).toEqual([45015]);
  });

  it('an event grants 3 sends for 1 minute', async () => {
    api.userInteracted('u1', 'event');
    expect(await sendMany('u1', 4)).toEqual([0, 0, 0, 45047]);
    api.userInteracted('u2', 'event');
    clock += MIN;
    expect(await sendMany('u2', 1)).toEqual([45015]);
  });

  it('quota is not cumulative: a new message resets to 5', async () => {
    api.userInteracted('u1', 'message');
    await sendMany('u1', 4);
    api.userInteracted('u1', 'message');
    expect(await sendMany('u1', 6)).toEqual([0, 0, 0, 0, 0, 45047]);
  });

  it('an event during an open message window neither shortens it nor adds up', async () => {
    api.userInteracted('u1', 'message');
    await sendMany('u1', 4);
    api.userInteracted('u1', 'event');
    expect(api.sendWindow('u1')).toMatchObject({ remaining: 3, expiresAt: T0 + 48 * HOUR });
    clock += 10 * MIN;
    expect(await sendMany('u1', 4)).toEqual([0, 0, 0, 45047]);
  });

  it('userInteracted takes an explicit time', async () => {
    api.userInteracted('u1', 'message', T0 - 48 * HOUR);
    expect(await sendMany('u1', 1)).toEqual([45015]);
  });

  it('windows are per user', async () => {
    api.userInteracted('u1', 'event');
    await sendMany('u1', 3);
    api.userInteracted('u2', 'event');
    expect(await sendMany('u2', 1)).toEqual([0]);
  });

  it('enforceWindow: false accepts any user without limit', async () => {
    const open = await start({ enforceWindow: false });
    const t = (await getToken({}, open)).access_token as string;
    for (let i = 0; i < 7; i += 1) {
      const res = await fetch(`${open.url}${SEND}?access_token=${t}`, { method: 'POST', body: JSON.stringify(text('anyone', 'x')) });
      expect(((await res.json()) as WxAnswer).errcode).toBe(0);
    }
    expect(open.deliveries).toHaveLength(7);
  });
});

describe('POST /cgi-bin/message/custom/typing', () => {
  let token: string;
  beforeEach(async () => {
    token = await freshToken();
  });

  async function typing(body: Body, target = api, t = token): Promise<number> {
    const res = await fetch(`${target.url}${TYPING}?access_token=${t}`, { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    return ((await res.json()) as WxAnswer).errcode as number;
  }

  it('records Typing and CancelTyping', async () => {
    expect(await typing({ touser: 'u1', command: 'Typing' })).toBe(0);
    clock += 1000;
    expect(await typing({ touser: 'u1', command: 'CancelTyping' })).toBe(0);
    expect(api.typing).toEqual([
      { touser: 'u1', command: 'Typing', at: T0 },
      { touser: 'u1', command: 'CancelTyping', at: T0 + 1000 },
    ]);
  });

  it('a bad command → 45072; token errors as for send', async () => {
    expect(await typing({ touser: 'u1', command: 'typing' })).toBe(45072);
    expect(await typing({ touser: 'u1' })).toBe(45072);
    expect(await typing({ touser: 'u1', command: 'Typing' }, api, 'bogus')).toBe(40001);
    api.expireTokens();
    expect(await typing({ touser: 'u1', command: 'Typing' })).toBe(42001);
    expect(api.typing).toHaveLength(0);
  });

  it('strictTyping: 45015 without a window, 45080 after 30 s without exchange, 45081 while typing', async () => {
    const strict = await start({ strictTyping: true });
    const t = (await getToken({}, strict)).access_token as string;
    expect(await typing({ touser: 'u1', command: 'Typing' }, strict, t)).toBe(45015);
    strict.userInteracted('u1', 'message');
    expect(await typing({ touser: 'u1', command: 'Typing' }, strict, t)).toBe(0);
    expect(await typing({ touser: 'u1', command: 'Typing' }, strict, t)).toBe(45081);
    clock += 15_000;
    expect(await typing({ touser: 'u1', command: 'Typing' }, strict, t)).toBe(0);
    clock += 15_001;
    expect(await typing({ touser: 'u1', command: 'Typing' }, strict, t)).toBe(45080);
    expect(strict.typing).toHaveLength(2);
  });
});

describe('injected faults', () => {
  let token: string;
  beforeEach(async () => {
    token = await freshToken();
    api.userInteracted('u1', 'message');
  });

  it('apply FIFO to the next matching calls, `times` each, then stop', async () => {
    api.inject({ path: SEND, errcode: -1, times: 2 });
    api.inject({ path: SEND, errcode: 45009 });
    api.inject({ path: TYPING, errcode: 45011 });
    const codes = [];
    for (let i = 0; i < 4; i += 1) codes.push((await send(token, text('u1', 'x'))).errcode);
    expect(codes).toEqual([-1, -1, 45009, 0]);
    expect(api.deliveries).toHaveLength(1);
    expect(api.sendWindow('u1')?.remaining).toBe(4);
    expect(api.calls.filter((c) => c.path === SEND).map((c) => c.errcode)).toEqual([-1, -1, 45009, 0]);
    const typingRes = await fetch(`${api.url}${TYPING}?access_token=${token}`, { method: 'POST', body: '{"touser":"u1","command":"Typing"}' });
    expect(((await typingRes.json()) as WxAnswer).errcode).toBe(45011);
  });

  it('an injected errmsg carries the documented wording and a rid', async () => {
    api.inject({ path: SEND, errcode: -1 });
    const json = await send(token, text('u1', 'x'));
    expect(json.errmsg).toMatch(/^system error rid: /);
  });

  it('times: Infinity keeps failing until reset', async () => {
    api.inject({ path: SEND, errcode: -1, times: Infinity });
    for (let i = 0; i < 3; i += 1) expect((await send(token, text('u1', 'x'))).errcode).toBe(-1);
    api.reset();
    api.userInteracted('u1', 'message');
    expect((await send(token, text('u1', 'x'))).errcode).toBe(0);
  });

  it('httpStatus without errcode answers an HTML gateway page', async () => {
    api.inject({ path: SEND, httpStatus: 502 });
    const res = await fetch(`${api.url}${SEND}?access_token=${token}`, { method: 'POST', body: JSON.stringify(text('u1', 'x')) });
    expect(res.status).toBe(502);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(await res.text()).toContain('502 Bad Gateway');
    expect(api.calls.at(-1)).toMatchObject({ errcode: -1, httpStatus: 502 });
    expect(api.deliveries).toHaveLength(0);
  });

  it('httpStatus with errcode answers that JSON with that status', async () => {
    api.inject({ path: '/cgi-bin/token', httpStatus: 503, errcode: -1 });
    const res = await fetch(`${api.url}/cgi-bin/token?grant_type=client_credential&appid=${APP.appId}&secret=${APP.appSecret}`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as WxAnswer).errcode).toBe(-1);
  });

  it('faults the token endpoints too, and every attempt counts as a fetch', async () => {
    api.inject({ path: '/cgi-bin/stable_token', errcode: 40164 });
    expect((await stableToken()).errcode).toBe(40164);
    expect((await stableToken()).access_token).toBeDefined();
    expect(api.tokenFetches.map((f) => f.endpoint)).toEqual(['token', 'stable_token', 'stable_token']);
  });

  it('delayMs holds the answer, then the call proceeds', async () => {
    api.inject({ path: SEND, delayMs: 40 });
    const started = performance.now();
    expect((await send(token, text('u1', 'x'))).errcode).toBe(0);
    expect(performance.now() - started).toBeGreaterThanOrEqual(35);
    expect(api.deliveries).toHaveLength(1);
  });

  it('a delayed call does not hold up the others', async () => {
    api.inject({ path: SEND, delayMs: 40 });
    const slow = send(token, text('u1', 'slow'));
    await new Promise((resolve) => setTimeout(resolve, 5));
    await send(token, text('u1', 'fast'));
    await slow;
    expect(api.deliveries.map((d) => contentOf(d))).toEqual(['fast', 'slow']);
  });

  it('applyAnyway delivers and spends quota but answers the fault (lost answer, docs/wechat-protocol.md §9.4)', async () => {
    api.inject({ path: SEND, errcode: -1, applyAnyway: true });
    expect((await send(token, text('u1', 'x'))).errcode).toBe(-1);
    expect(api.deliveries).toHaveLength(1);
    expect(api.sendWindow('u1')?.remaining).toBe(4);
  });

  it('applyAnyway keeps a real error when the work itself fails', async () => {
    api.inject({ path: SEND, errcode: -1, applyAnyway: true });
    expect((await send(token, text('nobody', 'x'))).errcode).toBe(45015);
  });

  it('times must be positive', () => {
    expect(() => api.inject({ path: SEND, errcode: -1, times: 0 })).toThrow(RangeError);
  });

  it('close() does not hang on a delayed request', async () => {
    api.inject({ path: SEND, delayMs: 60_000 });
    const pending = send(token, text('u1', 'x')).catch((err: unknown) => err);
    await new Promise((resolve) => setTimeout(resolve, 10));
    const started = performance.now();
    await api.close();
    expect(performance.now() - started).toBeLessThan(1000);
    expect(await pending).toBeInstanceOf(Error);
  });
});

describe('observing deliveries', () => {
  let token: string;
  beforeEach(async () => {
    token = await freshToken();
    api.userInteracted('u1', 'message');
  });

  it('waitForDeliveries resolves once enough have arrived', async () => {
    const waiting = api.waitForDeliveries(2, 2000);
    await send(token, text('u1', 'a'));
    await send(token, text('u1', 'b'));
    const deliveries = await waiting;
    expect(deliveries.map((d) => contentOf(d))).toEqual(['a', 'b']);
    await expect(api.waitForDeliveries(1)).resolves.toHaveLength(2);
  });

  it('waitForDeliveries rejects after its timeout, saying how many arrived', async () => {
    await send(token, text('u1', 'a'));
    await expect(api.waitForDeliveries(2, 30)).rejects.toThrow(/1 of 2 deliveries after 30 ms/);
  });

  it("on('delivery') sees each accepted send, not the refused ones", async () => {
    const seen: string[] = [];
    api.on('delivery', (d) => seen.push(d.touser));
    await send(token, text('u1', 'a'));
    await send(token, text('u2', 'b'));
    expect(seen).toEqual(['u1']);
  });

  it('reset clears records, injections and windows but keeps tokens', async () => {
    await send(token, text('u1', 'a'));
    api.inject({ path: SEND, errcode: -1 });
    api.reset();
    expect([api.deliveries.length, api.calls.length, api.tokenFetches.length]).toEqual([0, 0, 0]);
    expect(api.sendWindow('u1')).toBeUndefined();
    expect((await send(token, text('u1', 'a'))).errcode).toBe(45015);
    api.userInteracted('u1', 'message');
    expect((await send(token, text('u1', 'a'))).errcode).toBe(0);
  });
});

describe('an unverified account (unverified: true)', () => {
  let unverified: FakeWechatApi;
  let token: string;
  beforeEach(async () => {
    unverified = await start({ unverified: true });
    token = (await getToken({}, unverified)).access_token as string;
    unverified.userInteracted('u1', 'message');
  });

  async function call(path: string, body: Body, t = token): Promise<WxAnswer> {
    const res = await fetch(`${unverified.url}${path}?access_token=${encodeURIComponent(t)}`, { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    return (await res.json()) as WxAnswer;
  }

  it('answers 48001 api unauthorized to every custom/send and custom/typing, delivering nothing', async () => {
    const sent = await call(SEND, text('u1', '你好'));
    expect(sent.errcode).toBe(48001);
    expect(sent.errmsg).toMatch(/^api unauthorized rid: /);
    expect(await call(SEND, { touser: 'u1', msgtype: 'news', news: { articles: [] } })).toMatchObject({ errcode: 48001 });
    expect(await call(TYPING, { touser: 'u1', command: 'Typing' })).toMatchObject({ errcode: 48001 });
    expect(unverified.deliveries).toHaveLength(0);
    expect(unverified.typing).toHaveLength(0);
    // Nothing was sent, so nothing of the user's quota was spent.
    expect(unverified.sendWindow('u1')?.remaining).toBe(5);
    expect(unverified.unauthorized).toEqual([
      { path: SEND, touser: 'u1', what: 'text', at: T0 },
      { path: SEND, touser: 'u1', what: 'news', at: T0 },
      { path: TYPING, touser: 'u1', what: 'Typing', at: T0 },
    ]);
    expect(unverified.calls.filter((c) => c.path === SEND || c.path === TYPING).map((c) => c.errcode)).toEqual([48001, 48001, 48001]);
  });

  it('keeps the token endpoints and media upload working', async () => {
    expect(unverified.unverified).toBe(true);
    const stable = await postRaw('/cgi-bin/stable_token', '', JSON.stringify({ grant_type: 'client_credential', appid: APP.appId, secret: APP.appSecret }));
    expect(stable.json.access_token).toEqual(expect.any(String));
    const form = new FormData();
    form.append('media', new Blob([new Uint8Array(10)], { type: 'image/jpeg' }), 'a.jpg');
    const res = await fetch(`${unverified.url}/cgi-bin/media/upload?access_token=${token}&type=image`, { method: 'POST', body: form });
    expect(await res.json()).toMatchObject({ type: 'image', media_id: expect.any(String) });
    expect(unverified.unauthorized).toHaveLength(0);
  });

  it('checks the token first: a bad one is 40001, not a refusal', async () => {
    expect(await call(SEND, text('u1', 'x'), 'bogus')).toMatchObject({ errcode: 40001 });
    expect(unverified.unauthorized).toHaveLength(0);
  });

  it("emits 'unauthorized' for each refusal, even of a body it cannot read; reset forgets them", async () => {
    const seen: unknown[] = [];
    unverified.on('unauthorized', (c) => seen.push(c));
    const res = await fetch(`${unverified.url}${SEND}?access_token=${token}`, { method: 'POST', body: 'not json' });
    expect(await res.json()).toMatchObject({ errcode: 48001 });
    expect(seen).toEqual([{ path: SEND, at: T0 }]);
    unverified.reset();
    expect(unverified.unauthorized).toHaveLength(0);
  });

  it('a verified account (the default) refuses nothing', async () => {
    api.userInteracted('u1', 'message');
    expect(api.unverified).toBe(false);
    expect(await send(await freshToken(), text('u1', 'x'))).toMatchObject({ errcode: 0 });
    expect(api.unauthorized).toHaveLength(0);
  });
});

describe('POST /cgi-bin/media/upload', () => {
  async function upload(type: string, form: FormData): Promise<WxAnswer> {
    const token = await freshToken();
    const res = await fetch(`${api.url}/cgi-bin/media/upload?access_token=${token}&type=${type}`, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    return (await res.json()) as WxAnswer;
  }

  function formWith(field: string, bytes: number): FormData {
    const form = new FormData();
    form.append(field, new Blob([new Uint8Array(bytes)], { type: 'image/jpeg' }), 'a.jpg');
    return form;
  }

  it('returns type, media_id and created_at (seconds) and records the upload', async () => {
    const json = await upload('image', formWith('media', 1000));
    expect(json).toEqual({ type: 'image', media_id: expect.stringMatching(/^[A-Za-z0-9_-]{64}$/), created_at: T0 / 1000 });
    expect(api.uploads).toEqual([
      { type: 'image', mediaId: json.media_id, filename: 'a.jpg', contentType: 'image/jpeg', size: 1000, at: T0 },
    ]);
  });

  it.each([
    { title: 'unknown type', type: 'gif', field: 'media', bytes: 10, errcode: 40004 },
    { title: 'no media field', type: 'image', field: 'file', bytes: 10, errcode: 41005 },
    { title: 'thumb over 64 KB', type: 'thumb', field: 'media', bytes: 64 * 1024 + 1, errcode: 40006 },
  ])('$title → $errcode', async ({ type, field, bytes, errcode }) => {
    expect((await upload(type, formWith(field, bytes))).errcode).toBe(errcode);
    expect(api.uploads).toHaveLength(0);
  });
});

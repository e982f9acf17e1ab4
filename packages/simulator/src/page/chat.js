/* global document, window, localStorage, EventSource, fetch, setTimeout, clearTimeout, URL */
// The simulator's chat page: one phone per user. Everything shown comes from the simulator's event
// stream (/sim/events): the user's own pushes, WeChat's tries and the gateway's answers (passive
// replies: the answer, or wxrelay's placeholder, with the try that got it), and the
// customer-service messages and typing states the workers send through the fake WeChat API (or
// its 48001 refusals, when it plays an unverified account).
//
// Bot and user content is only ever set with textContent; the one markup WeChat renders in text
// messages, <a href="http(s)://…">label</a>, is rebuilt element by element (never innerHTML).

const STORAGE_KEY = 'wxrelay-sim-users';
const TYPING_MS = 15_000; // a Typing state lasts 15 s (docs/wechat-protocol.md §9.2)
const NOT_AVAILABLE = '该公众号暂时无法提供服务，请稍后再试';

const phones = new Map();

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function isWebUrl(href) {
  try {
    const url = new URL(href, window.location.href);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

const LINK_RE = /<a\s+([^>]*)>([\s\S]*?)<\/a>/gi;
const HREF_RE = /\bhref\s*=\s*(?:"([^"]*)"|'([^']*)')/i;

/** Text with WeChat's links: http(s) anchors become <a>, mini-program links a label, the rest text. */
function appendRichText(parent, text) {
  let last = 0;
  for (const match of text.matchAll(LINK_RE)) {
    parent.append(document.createTextNode(text.slice(last, match.index)));
    const [whole, attrs, label] = match;
    const hrefMatch = HREF_RE.exec(attrs);
    const href = hrefMatch ? (hrefMatch[1] ?? hrefMatch[2]) : undefined;
    if (href !== undefined && isWebUrl(href)) {
      const a = el('a', undefined, label);
      a.href = href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      parent.append(a);
    } else if (/data-miniprogram-appid/i.test(attrs)) {
      parent.append(el('span', 'mini-link', `${label} [mini program]`));
    } else {
      parent.append(document.createTextNode(whole));
    }
    last = match.index + whole.length;
  }
  parent.append(document.createTextNode(text.slice(last)));
}

function card(label, title, description, ids) {
  const node = el('div', 'card');
  node.append(el('div', 'label', label));
  if (title) node.append(el('div', 'card-title', title));
  if (description) node.append(el('div', 'card-desc', description));
  for (const [name, value] of Object.entries(ids ?? {})) {
    if (value !== undefined && value !== '') node.append(el('div', 'ids', `${name}: ${value}`));
  }
  return node;
}

function linkTo(href, label) {
  if (!isWebUrl(href)) return el('span', 'ids', href);
  const a = el('a', undefined, label ?? href);
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  return a;
}

/** A passive reply (shared's PassiveReply) in the shape of a customer-service body. */
function fromPassive(reply) {
  switch (reply.kind) {
    case 'text':
      return { msgtype: 'text', text: { content: reply.content } };
    case 'image':
    case 'voice':
      return { msgtype: reply.kind, [reply.kind]: { media_id: reply.mediaId } };
    case 'video':
      return { msgtype: 'video', video: { media_id: reply.mediaId, title: reply.title, description: reply.description } };
    case 'music':
      return {
        msgtype: 'music',
        music: { title: reply.title, description: reply.description, musicurl: reply.musicUrl, hqmusicurl: reply.hqMusicUrl, thumb_media_id: reply.thumbMediaId },
      };
    case 'news':
      return {
        msgtype: 'news',
        news: { articles: reply.articles.map((a) => ({ title: a.title, description: a.description, url: a.url, picurl: a.picUrl })) },
      };
    default:
      return { msgtype: reply.kind, [reply.kind]: reply };
  }
}

/** The content of a bot message, by msgtype (customer-service body shape). */
function renderBotContent(phone, body) {
  const part = body[body.msgtype] ?? {};
  switch (body.msgtype) {
    case 'text': {
      const bubble = el('div', 'bubble');
      appendRichText(bubble, String(part.content ?? ''));
      return bubble;
    }
    case 'image':
      return card('Image', undefined, undefined, { media_id: part.media_id });
    case 'voice':
      return card('Voice', undefined, undefined, { media_id: part.media_id });
    case 'video':
      return card('Video', part.title, part.description, { media_id: part.media_id, thumb_media_id: part.thumb_media_id });
    case 'music': {
      const node = card('Music', part.title, part.description, { thumb_media_id: part.thumb_media_id });
      if (part.musicurl) node.append(linkTo(part.musicurl, '▶ play'));
      return node;
    }
    case 'news': {
      const wrap = el('div', 'news');
      for (const article of part.articles ?? []) {
        const node = card('News', article.title, article.description);
        if (article.picurl && isWebUrl(article.picurl)) {
          const img = el('img');
          img.src = article.picurl;
          img.alt = article.title ?? '';
          node.append(img);
        }
        if (article.url) node.append(linkTo(article.url, 'Read more'));
        wrap.append(node);
      }
      return wrap;
    }
    case 'msgmenu': {
      const node = el('div', 'bubble msgmenu');
      if (part.head_content) node.append(el('div', 'menu-head', part.head_content));
      const options = el('div', 'menu-options');
      for (const item of part.list ?? []) {
        const button = el('button', 'menu-option', item.content);
        button.type = 'button';
        // Tapping an option sends its text back with bizmsgmenuid, as WeChat does (docs/wechat-protocol.md §5).
        button.addEventListener('click', () => {
          void send(phone, { type: 'text', content: String(item.content), bizmsgmenuid: String(item.id) });
        });
        options.append(button);
      }
      node.append(options);
      if (part.tail_content) node.append(el('div', 'menu-tail', part.tail_content));
      return node;
    }
    case 'mpnews':
      return card('Article (mpnews)', undefined, undefined, { media_id: part.media_id });
    case 'mpnewsarticle':
      return card('Article', undefined, undefined, { article_id: part.article_id });
    case 'wxcard':
      return card('Card', undefined, undefined, { card_id: part.card_id });
    case 'miniprogrampage':
      return card('Mini program', part.title, undefined, { appid: part.appid, pagepath: part.pagepath });
    case 'transfer_customer_service':
      return el('div', 'bubble', `→ handed to customer service${part.kfAccount ? ` (${part.kfAccount})` : ''}`);
    default:
      return card(String(body.msgtype), undefined, JSON.stringify(part));
  }
}

function scrollDown(phone) {
  phone.list.scrollTop = phone.list.scrollHeight;
}

function addItem(phone, item) {
  phone.list.append(item);
  scrollDown(phone);
  return item;
}

function addSystem(phone, text, extraClass) {
  const item = el('li', `msg system${extraClass ? ` ${extraClass}` : ''}`);
  item.append(el('div', 'bubble', text));
  return addItem(phone, item);
}

function addBot(phone, body, source, note, extra) {
  const item = el('li', 'msg bot');
  item.dataset.source = source;
  item.dataset.msgtype = body.msgtype;
  for (const [name, value] of Object.entries(extra ?? {})) item.dataset[name] = value;
  item.append(renderBotContent(phone, body));
  item.append(el('div', 'meta', note));
  return addItem(phone, item);
}

function describeEvent(spec) {
  switch (spec.event) {
    case 'subscribe':
      return spec.scene ? `You followed (QR scene ${spec.scene})` : 'You followed';
    case 'unsubscribe':
      return 'You unfollowed';
    case 'CLICK':
      return `Menu click: ${spec.eventKey}`;
    case 'VIEW':
      return `Menu link opened: ${spec.eventKey}`;
    case 'SCAN':
      return `Scanned QR scene ${spec.eventKey}`;
    case 'LOCATION':
      return `Location reported (${spec.latitude}, ${spec.longitude})`;
    case 'other':
      return `Event ${spec.eventName}`;
    default:
      return `Event ${spec.event}${spec.eventKey ? ` ${spec.eventKey}` : ''}`;
  }
}

function renderUserContent(spec) {
  switch (spec.type) {
    case 'text':
      return el('div', 'bubble', spec.content);
    case 'image':
      return card('Image', undefined, undefined, { url: spec.picUrl });
    case 'voice':
      return card('Voice', spec.recognition, undefined, { format: spec.format ?? 'amr' });
    case 'video':
    case 'shortvideo':
      return card(spec.type === 'video' ? 'Video' : 'Short video');
    case 'location':
      return card('Location', spec.label, `${spec.latitude}, ${spec.longitude}`);
    case 'link':
      return card('Link', spec.title ?? spec.url, spec.description, { url: spec.url });
    default:
      return el('div', 'bubble', JSON.stringify(spec));
  }
}

function onInbound(phone, event) {
  let item;
  if (event.spec.type === 'event') {
    item = addSystem(phone, describeEvent(event.spec));
  } else {
    item = el('li', 'msg me');
    item.dataset.msgtype = event.spec.type;
    item.append(renderUserContent(event.spec));
    addItem(phone, item);
  }
  const meta = el('div', 'meta', `sending (${event.mode})…`);
  item.append(meta);
  phone.pending.set(event.ref, { meta, mode: event.mode });
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** A try that did not settle the push: WeChat sends the next one (the message still shows as sending). */
function onAttempt(phone, event) {
  const pending = phone.pending.get(event.ref);
  if (!pending) return;
  const { attempt } = event;
  const how = attempt.ended === 'cut' ? `cut after ${seconds(attempt.durationMs)}` : (attempt.error ?? attempt.ended);
  pending.meta.textContent = `sending (${pending.mode})… try ${attempt.attempt} ${how}, WeChat tries again`;
}

/** `passive · attempt 2`, or `placeholder · attempt 3` when the gateway labelled its reply a placeholder. */
function passiveLabel(event) {
  const attempt = event.replyAttempt ?? event.tries;
  return `${event.replyKind === 'placeholder' ? 'placeholder' : 'passive'} · attempt ${attempt}`;
}

function onCallback(phone, event) {
  const pending = phone.pending.get(event.ref);
  phone.pending.delete(event.ref);
  const tries = event.tries > 1 ? ` after ${event.tries} tries` : '';
  if (pending) {
    const answered = event.outcome === 'ack' ? 'success' : event.replyKind === 'placeholder' ? 'placeholder' : 'passive reply';
    pending.meta.textContent = event.outcome === 'failed' ? `✗ failed${tries}` : `✓ ${answered}${tries}`;
  }
  if (event.outcome === 'failed') {
    addSystem(phone, `${NOT_AVAILABLE}\n(${event.error ?? 'no valid answer'}${tries})`, 'failed');
  } else if (event.outcome === 'reply' && event.reply) {
    addBot(phone, fromPassive(event.reply.reply), 'passive', passiveLabel(event), {
      replyKind: event.replyKind ?? 'answer',
      attempt: String(event.replyAttempt ?? event.tries),
    });
  }
}

function setTyping(phone, on) {
  clearTimeout(phone.typingTimer);
  phone.typing.hidden = !on;
  if (on) phone.typingTimer = setTimeout(() => setTyping(phone, false), TYPING_MS);
}

function onEvent(phone, event) {
  if (event.seq <= phone.lastSeq) return; // a replay after a reconnect
  phone.lastSeq = event.seq;
  switch (event.type) {
    case 'inbound':
      return onInbound(phone, event);
    case 'attempt':
      return onAttempt(phone, event);
    case 'callback':
      return onCallback(phone, event);
    case 'unauthorized':
      // A refused typing call is left out: the refused message says it all.
      if (event.path.endsWith('/custom/send')) {
        addSystem(phone, `customer-service message${event.what ? ` (${event.what})` : ''} refused: 48001 api unauthorized (unverified account)`, 'failed unauthorized');
      }
      return undefined;
    case 'delivery': {
      setTyping(phone, false);
      const kf = event.body.customservice?.kf_account;
      addBot(phone, event.body, 'customer-service', kf ? `customer service · ${kf}` : 'customer service');
      return undefined;
    }
    case 'typing':
      return setTyping(phone, event.command === 'Typing');
    default:
      return undefined;
  }
}

async function send(phone, message) {
  try {
    const response = await fetch('/sim/send', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: phone.user, message }),
    });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      addSystem(phone, `not sent: ${problem.message ?? response.status}`, 'failed');
    }
  } catch (err) {
    addSystem(phone, `not sent: ${err instanceof Error ? err.message : String(err)}`, 'failed');
  }
}

function saveUsers() {
  localStorage.setItem(STORAGE_KEY, JSON.stringify([...phones.keys()]));
}

function addPhone(user) {
  if (phones.has(user)) return;
  const template = document.getElementById('phone-template');
  const section = template.content.firstElementChild.cloneNode(true);
  section.dataset.user = user;
  section.querySelector('.title').textContent = user;
  const phone = {
    user,
    section,
    list: section.querySelector('.messages'),
    typing: section.querySelector('.typing'),
    pending: new Map(),
    lastSeq: 0,
    typingTimer: undefined,
    source: new EventSource(`/sim/events?user=${encodeURIComponent(user)}&replay=1`),
  };
  phone.source.addEventListener('message', (message) => onEvent(phone, JSON.parse(message.data)));
  section.querySelector('.follow').addEventListener('click', () => void send(phone, { type: 'event', event: 'subscribe' }));
  section.querySelector('.unfollow').addEventListener('click', () => void send(phone, { type: 'event', event: 'unsubscribe' }));
  section.querySelector('.menu-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = section.querySelector('.menu-key').value.trim();
    if (key) void send(phone, { type: 'event', event: 'CLICK', eventKey: key });
  });
  section.querySelector('.compose').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = section.querySelector('.compose .text');
    const content = input.value;
    if (content.trim() === '') return;
    input.value = '';
    void send(phone, { type: 'text', content });
  });
  section.querySelector('.remove').addEventListener('click', () => {
    phone.source.close();
    section.remove();
    phones.delete(user);
    saveUsers();
  });
  document.getElementById('phones').append(section);
  phones.set(user, phone);
  saveUsers();
}

function initialUsers() {
  const fromUrl = new URL(window.location.href).searchParams.get('users');
  if (fromUrl) return fromUrl.split(',').map((s) => s.trim()).filter(Boolean);
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '[]');
    if (Array.isArray(saved) && saved.length > 0) return saved.map(String);
  } catch {
    // a damaged entry: start over
  }
  return ['alice'];
}

async function main() {
  const config = await (await fetch('/sim/config')).json();
  document.getElementById('account').textContent = `${config.account} · ${config.mode} mode → ${config.gatewayUrl}`;
  if (config.replyMode) {
    const badge = document.getElementById('reply-mode');
    badge.textContent = `REPLY_MODE ${config.replyMode}`;
    badge.hidden = false;
  }
  document.getElementById('unverified').hidden = !config.unverified;
  document.getElementById('add-user').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = document.getElementById('new-user');
    const name = input.value.trim().replaceAll(',', ' ');
    if (name) addPhone(name);
    input.value = '';
  });
  for (const user of initialUsers()) addPhone(user);
  document.body.dataset.ready = 'true';
}

void main();

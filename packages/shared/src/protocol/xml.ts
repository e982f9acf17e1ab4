/**
 * The inbound XML codec: parse a push body and narrow it into {@link InboundMessage}.
 *
 * Pure: strings in, typed values or a `WX_ERR_XML` {@link WxError} out. Error messages name the
 * offending field or position, never user content.
 *
 * docs/wechat-protocol.md §3.2 (envelope), §3.4 (parsing rules), §5 (messages), §6 (events).
 *
 * @module
 */
import { XMLParser, XMLValidator, type EntityDecoderOptions } from 'fast-xml-parser';
import { WxError } from '../errors.js';
import { optText, reqText, xmlError } from './xml-fields.js';
import { scanFlatXml } from './xml-fast.js';
import type {
  EventBase,
  FileMessage,
  ImageMessage,
  InboundEvent,
  InboundMessage,
  LinkMessage,
  LocationMessage,
  LocationSelectEvent,
  MassSendJobFinishEvent,
  MessageBase,
  OtherEvent,
  PublishedArticle,
  PublishJobFinishEvent,
  PushBase,
  ScanEvent,
  SubscribeEvent,
  SubscribeMsgItem,
  TextMessage,
  UnknownMessage,
  VideoMessage,
  ViewEvent,
  ViewMiniprogramEvent,
  VoiceMessage,
  XmlObject,
  XmlValue,
} from './messages.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };


// ---------------------------------------------------------------------------------------------
// Entities: only XML's five predefined entities and character references. DOCTYPE is refused
// before parsing, so no declared entity can ever reach the decoder; an unknown name is an error
// (a well-formed document cannot contain one). Stateless, so one instance serves every parse and
// fast-xml-parser does not build its own decoder (with HTML tables) per call.

const PREDEFINED: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const ENTITY_RE = /&(?:#(\d{1,7})|#x([0-9A-Fa-f]{1,6})|([A-Za-z][A-Za-z0-9]*));/g;

function isXmlChar(cp: number): boolean {
  return (
    cp === 0x9 ||
    cp === 0xa ||
    cp === 0xd ||
    (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) ||
    (cp >= 0x10000 && cp <= 0x10ffff)
  );
}

function decodeEntity(_match: string, dec?: string, hex?: string, name?: string): string {
  if (name !== undefined) {
    const value = PREDEFINED[name];
    if (value === undefined) throw xmlError('undeclared entity reference');
    return value;
  }
  const cp = dec !== undefined ? Number.parseInt(dec, 10) : Number.parseInt(hex ?? '', 16);
  if (!isXmlChar(cp)) throw xmlError('character reference to a character XML forbids');
  return String.fromCodePoint(cp);
}

function decodeEntities(text: string): string {
  return text.includes('&') ? text.replace(ENTITY_RE, decodeEntity) : text;
}

const entityDecoder: EntityDecoderOptions = {
  setExternalEntities: () => undefined,
  addInputEntities: (entities) => {
    if (Object.keys(entities).length > 0) throw xmlError('entity declarations are refused');
  },
  reset: () => undefined,
  decode: decodeEntities,
  setXmlVersion: () => undefined,
};

// ---------------------------------------------------------------------------------------------
// Parser

/** Elements that are always arrays, even when they occur once (`PicList`, `Articles`, subscribe-msg `List`, …). */
const ALWAYS_ARRAY: ReadonlySet<string> = new Set(['item', 'List']);
const WHITESPACE_RE = /^[ \t\r\n]*$/;

let parser: XMLParser | undefined;

function getParser(): XMLParser {
  parser ??= new XMLParser({
    // Keep every value a string: `0123` stays "0123", a 64-bit MsgId stays exact.
    parseTagValue: false,
    parseAttributeValue: false,
    // WeChat sends no attributes; skipping them is also faster.
    ignoreAttributes: true,
    // Never trim user text (CDATA " hi " stays " hi "); layout whitespace between elements is
    // dropped by tagValueProcessor below instead.
    trimValues: false,
    ignoreDeclaration: true,
    ignorePiTags: true,
    isArray: (tagName) => ALWAYS_ARRAY.has(tagName),
    // Called for text of elements that also have child elements with isLeafNode=false: that is
    // indentation, dropped (returning '' stores nothing). Non-blank text there is mixed content,
    // which no WeChat push has.
    tagValueProcessor: (_tagName, value, _path, _hasAttributes, isLeafNode) => {
      if (isLeafNode) return value;
      if (WHITESPACE_RE.test(value)) return '';
      throw xmlError('text beside child elements (mixed content)');
    },
    entityDecoder,
    // Hand callbacks the matcher instead of building a path string for each tag (faster).
    jPath: false,
  });
  return parser;
}

/**
 * Throws unless every `<!` in the document opens a CDATA section or a comment: refuses DOCTYPE,
 * ENTITY and every other DTD declaration (XXE, billion laughs) in any letter case, before the
 * parser sees the document. Text inside CDATA (a user may send `<!DOCTYPE html>`) is skipped.
 */
function refuseDeclarations(xml: string): void {
  let at = xml.indexOf('<!');
  while (at !== -1) {
    if (xml.startsWith('<![CDATA[', at)) {
      const end = xml.indexOf(']]>', at + 9);
      if (end === -1) return; // unterminated: the validator rejects it
      at = xml.indexOf('<!', end + 3);
    } else if (xml.startsWith('<!--', at)) {
      const end = xml.indexOf('-->', at + 4);
      if (end === -1) return;
      at = xml.indexOf('<!', end + 3);
    } else {
      throw xmlError('DOCTYPE and entity declarations are refused');
    }
  }
}

const CDATA_OPEN = '<![CDATA[';

function isLayoutText(xml: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = xml.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) return false;
  }
  return true;
}

/** Index of the `>` closing the tag opened at `lt`, skipping quoted attribute values. */
function endOfTag(xml: string, lt: number): number {
  for (let i = lt + 1; i < xml.length; i++) {
    const c = xml.charCodeAt(i);
    if (c === 0x3e) return i;
    if (c === 0x22 || c === 0x27) {
      const close = xml.indexOf(c === 0x22 ? '"' : "'", i + 1);
      if (close === -1) return -1;
      i = close;
    }
  }
  return -1;
}

/**
 * Drops the whitespace-only text beside CDATA sections in elements whose content is nothing but
 * CDATA sections and whitespace: `<MsgType> <![CDATA[event]]> </MsgType>` (as in WeChat's card
 * event samples) means `event`, not ` event`. Any other text beside CDATA is left as it is, and so
 * is an element without CDATA (`<A> </A>` stays `" "`). This is what the fast path reads too.
 *
 * Runs on a document the validator accepted; returns it unchanged when there is nothing to drop.
 */
function dropLayoutBesideCdata(xml: string): string {
  if (!xml.includes(CDATA_OPEN)) return xml;
  let out = '';
  let copied = 0;
  /** True while the innermost open element has held only CDATA and layout whitespace. */
  let leaf = false;
  let sawCdata = false;
  let layout: number[] = [];
  let i = 0;
  for (;;) {
    const lt = xml.indexOf('<', i);
    if (lt === -1) break;
    if (leaf && lt > i) {
      if (isLayoutText(xml, i, lt)) layout.push(i, lt);
      else leaf = false;
    }
    let next: number;
    if (xml.startsWith(CDATA_OPEN, lt)) {
      const end = xml.indexOf(']]>', lt + CDATA_OPEN.length);
      next = end === -1 ? -1 : end + 3;
      sawCdata = true;
    } else if (xml.charCodeAt(lt + 1) === 0x2f) {
      if (leaf && sawCdata) {
        for (let k = 0; k < layout.length; k += 2) {
          out += xml.slice(copied, layout[k]);
          copied = layout[k + 1] ?? copied;
        }
      }
      const gt = xml.indexOf('>', lt);
      next = gt === -1 ? -1 : gt + 1;
      leaf = false;
    } else if (xml.startsWith('<!--', lt) || xml.startsWith('<?', lt)) {
      const end = xml.indexOf(xml.charCodeAt(lt + 1) === 0x3f ? '?>' : '-->', lt + 2);
      next = end === -1 ? -1 : end + (xml.charCodeAt(lt + 1) === 0x3f ? 2 : 3);
      leaf = false;
    } else {
      const gt = endOfTag(xml, lt);
      next = gt === -1 ? -1 : gt + 1;
      leaf = gt !== -1 && xml.charCodeAt(gt - 1) !== 0x2f;
      sawCdata = false;
      layout = [];
    }
    if (next === -1) return xml; // not well-formed: the validator has refused it already
    i = next;
  }
  return copied === 0 ? xml : out + xml.slice(copied);
}

/**
 * Parses a WeChat XML document and returns the children of its `<xml>` root.
 *
 * Every value is a string (never a number); `item` and `List` elements are always arrays; text is
 * never trimmed; whitespace between elements, and whitespace-only text beside an element's CDATA
 * sections, is ignored. docs/wechat-protocol.md §3.2, §3.4.
 *
 * @throws {@link WxError} `WX_ERR_XML` when the document is empty, not well-formed, declares a
 *   DOCTYPE/entity, has mixed content, or its single root is not `<xml>`.
 */
export function parseXml(xml: string): XmlObject {
  if (xml.length === 0) throw xmlError('empty document');
  // Nearly every push is flat; the scanner reads those exactly as the general parser would.
  return scanFlatXml(xml) ?? parseXmlGeneral(xml);
}

/**
 * {@link parseXml} without the flat fast path: the validating general parser alone. Exported so
 * that tests and benchmarks can hold the two to the same answers.
 */
export function parseXmlGeneral(xml: string): XmlObject {
  if (xml.length === 0) throw xmlError('empty document');
  refuseDeclarations(xml);
  // The parser alone accepts truncated documents and mismatched tags (it returns partial data),
  // so well-formedness is checked first. Positions only: messages must not echo the body.
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw xmlError(`not well-formed XML (${valid.err.code} at ${valid.err.line}:${valid.err.col})`);
  }
  let doc: unknown;
  try {
    doc = getParser().parse(dropLayoutBesideCdata(xml));
  } catch (err) {
    if (err instanceof WxError) throw err;
    // The library's messages may quote the document: keep them out of ours.
    throw xmlError('XML parser rejected the document');
  }
  return rootOf(doc);
}

function rootOf(doc: unknown): XmlObject {
  if (typeof doc !== 'object' || doc === null) throw xmlError('no root element');
  const names = Object.keys(doc);
  if (names.length !== 1 || names[0] !== 'xml') throw xmlError('root element must be a single <xml>');
  const root = (doc as { xml: XmlValue }).xml;
  if (typeof root === 'string') {
    if (WHITESPACE_RE.test(root)) return {};
    throw xmlError('<xml> root holds text instead of elements');
  }
  if (Array.isArray(root)) throw xmlError('root element must be a single <xml>');
  return root as XmlObject;
}

// ---------------------------------------------------------------------------------------------
// Field readers. `path` is the dotted name used in error messages.

const DIGITS_RE = /^\d{1,15}$/;
const MSG_ID_RE = /^\d{1,20}$/;



function reqUint(obj: XmlObject, name: string, path: string = name): number {
  const value = reqText(obj, name, path);
  if (!DIGITS_RE.test(value)) throw xmlError(`${path} must be an unsigned integer`);
  return Number(value);
}

function reqId(obj: XmlObject, name: string, path: string = name): string {
  const value = reqText(obj, name, path);
  if (!MSG_ID_RE.test(value)) throw xmlError(`${path} must be a decimal id`);
  return value;
}

function isObject(value: XmlValue | undefined): value is XmlObject {
  return typeof value === 'object' && !Array.isArray(value);
}

/** A child element holding elements; an empty element (`<A/>`) reads as `{}`. */
function optObject(obj: XmlObject, name: string, path: string = name): XmlObject | undefined {
  const value = obj[name];
  if (value === undefined || isObject(value)) return value;
  if (typeof value === 'string' && WHITESPACE_RE.test(value)) return {};
  throw xmlError(`${path} must be a single element with children`);
}

function reqObject(obj: XmlObject, name: string, path: string = name): XmlObject {
  const value = optObject(obj, name, path);
  if (value === undefined) throw xmlError(`${path} is missing`);
  return value;
}

/** Repeated elements as an array; absent → `[]`, one → `[it]`. */
function listOf(value: XmlValue | undefined): readonly XmlValue[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? (value as readonly XmlValue[]) : [value];
}

function objectsOf(value: XmlValue | undefined, path: string): XmlObject[] {
  return listOf(value).map((entry) => {
    if (isObject(entry)) return entry;
    if (typeof entry === 'string' && WHITESPACE_RE.test(entry)) return {};
    throw xmlError(`${path} entries must be elements with children`);
  });
}

function textsOf(value: XmlValue | undefined, path: string): string[] {
  return listOf(value).map((entry) => {
    if (typeof entry === 'string') return entry;
    throw xmlError(`${path} entries must be text`);
  });
}

// ---------------------------------------------------------------------------------------------
// Narrowing

function pushBase(f: XmlObject): PushBase {
  return {
    toUserName: reqText(f, 'ToUserName'),
    fromUserName: reqText(f, 'FromUserName'),
    createTime: reqUint(f, 'CreateTime'),
  };
}

/**
 * `MsgId` when sent (and not empty), else absent: a push without one is still a message (WeChat
 * retries a refused push, then drops it), deduplicated by sender, `CreateTime` and `MsgType`.
 */
function optId(obj: XmlObject, name: string): string | undefined {
  const value = optText(obj, name);
  if (value === undefined || value === '') return undefined;
  if (!MSG_ID_RE.test(value)) throw xmlError(`${name} must be a decimal id`);
  return value;
}

/** Copies the fields WeChat sent (`[tag, property]`) onto `target`; absent ones stay absent. */
function copyOptional<T extends object>(target: T, f: XmlObject, fields: readonly (readonly [string, keyof T & string])[]): T {
  for (const [tag, key] of fields) {
    const value = optText(f, tag);
    if (value !== undefined) (target as Record<string, unknown>)[key] = value;
  }
  return target;
}

function messageBase(f: XmlObject, push: PushBase): MessageBase {
  const base: Mutable<MessageBase> = { ...push };
  const msgId = optId(f, 'MsgId');
  if (msgId !== undefined) base.msgId = msgId;
  const msgDataId = optText(f, 'MsgDataId');
  if (msgDataId !== undefined) base.msgDataId = msgDataId;
  const idx = optText(f, 'Idx');
  if (idx !== undefined) base.idx = idx;
  return base;
}

/**
 * Narrows the fields of a parsed push (see {@link parseXml}) into an {@link InboundMessage}.
 *
 * Unknown `MsgType` → `{ kind: 'unknown', raw }`; unknown `Event` → `{ kind: 'event', event: 'other', raw }`.
 * docs/wechat-protocol.md §5, §6.
 *
 * A message needs only the envelope and what carries its content (`Content`, `Location_X`/`_Y`,
 * `Url`); `MsgId`, media ids and descriptive fields are optional (absent when not sent), as in
 * every other SDK: refusing such a push makes WeChat retry it and then drop it.
 *
 * @throws {@link WxError} `WX_ERR_XML` naming the field when `ToUserName`, `FromUserName`,
 *   `CreateTime` (digits), `MsgType`, `Event` (for events) or a field the type requires is missing
 *   or malformed, or when a `MsgId` that is sent is not a decimal id.
 */
export function toInboundMessage(fields: XmlObject): InboundMessage {
  const msgType = reqText(fields, 'MsgType');
  const push = pushBase(fields);
  switch (msgType) {
    case 'event':
      return toEvent(fields, { kind: 'event', ...push });
    case 'text': {
      const msg: Mutable<TextMessage> = {
        kind: 'text',
        ...messageBase(fields, push),
        content: reqText(fields, 'Content'),
      };
      const menuId = optText(fields, 'bizmsgmenuid');
      if (menuId !== undefined) msg.bizmsgmenuid = menuId;
      return msg;
    }
    case 'image':
      return copyOptional<ImageMessage>({ kind: 'image', ...messageBase(fields, push) }, fields, [
        ['PicUrl', 'picUrl'],
        ['MediaId', 'mediaId'],
      ]);
    case 'voice':
      return copyOptional<VoiceMessage>({ kind: 'voice', ...messageBase(fields, push) }, fields, [
        ['MediaId', 'mediaId'],
        ['Format', 'format'],
        ['Recognition', 'recognition'],
      ]);
    case 'video':
    case 'shortvideo':
      return copyOptional<VideoMessage>({ kind: msgType, ...messageBase(fields, push) }, fields, [
        ['MediaId', 'mediaId'],
        ['ThumbMediaId', 'thumbMediaId'],
      ]);
    case 'location':
      return copyOptional<LocationMessage>(
        {
          kind: 'location',
          ...messageBase(fields, push),
          locationX: reqText(fields, 'Location_X'),
          locationY: reqText(fields, 'Location_Y'),
        },
        fields,
        [
          ['Scale', 'scale'],
          ['Label', 'label'],
        ],
      );
    case 'link':
      return copyOptional<LinkMessage>({ kind: 'link', ...messageBase(fields, push), url: reqText(fields, 'Url') }, fields, [
        ['Title', 'title'],
        ['Description', 'description'],
      ]);
    case 'file':
      return copyOptional<FileMessage>({ kind: 'file', ...messageBase(fields, push) }, fields, [
        ['Title', 'title'],
        ['Description', 'description'],
        ['FileKey', 'fileKey'],
        ['FileMd5', 'fileMd5'],
        ['FileTotalLen', 'fileTotalLen'],
      ]);
    default: {
      const msg: Mutable<UnknownMessage> = { kind: 'unknown', ...push, msgType, raw: fields };
      const msgId = optText(fields, 'MsgId');
      if (msgId !== undefined) msg.msgId = msgId;
      return msg;
    }
  }
}

const SUBSCRIBE_MSG_ELEMENT = {
  subscribe_msg_popup_event: 'SubscribeMsgPopupEvent',
  subscribe_msg_change_event: 'SubscribeMsgChangeEvent',
  subscribe_msg_sent_event: 'SubscribeMsgSentEvent',
} as const;

const QR_SCENE_PREFIX = 'qrscene_';

function toEvent(f: XmlObject, base: EventBase): InboundEvent {
  const event = reqText(f, 'Event');
  switch (event) {
    case 'subscribe': {
      const msg: Mutable<SubscribeEvent> = { ...base, event };
      const eventKey = optText(f, 'EventKey');
      if (eventKey !== undefined) {
        msg.eventKey = eventKey;
        if (eventKey.startsWith(QR_SCENE_PREFIX)) msg.scene = eventKey.slice(QR_SCENE_PREFIX.length);
      }
      const ticket = optText(f, 'Ticket');
      if (ticket !== undefined) msg.ticket = ticket;
      return msg;
    }
    case 'unsubscribe':
      return { ...base, event };
    case 'SCAN': {
      const msg: Mutable<ScanEvent> = { ...base, event, eventKey: reqText(f, 'EventKey') };
      const ticket = optText(f, 'Ticket');
      if (ticket !== undefined) msg.ticket = ticket;
      return msg;
    }
    case 'LOCATION':
      return {
        ...base,
        event,
        latitude: reqText(f, 'Latitude'),
        longitude: reqText(f, 'Longitude'),
        precision: reqText(f, 'Precision'),
      };
    case 'CLICK':
      return { ...base, event, eventKey: reqText(f, 'EventKey') };
    case 'VIEW':
    case 'view_miniprogram': {
      const msg: Mutable<ViewEvent | ViewMiniprogramEvent> = {
        ...base,
        event,
        eventKey: reqText(f, 'EventKey'),
      };
      const menuId = optText(f, 'MenuId');
      if (menuId !== undefined) msg.menuId = menuId;
      return msg;
    }
    case 'scancode_push':
    case 'scancode_waitmsg': {
      const info = reqObject(f, 'ScanCodeInfo');
      return {
        ...base,
        event,
        eventKey: reqText(f, 'EventKey'),
        scanType: reqText(info, 'ScanType', 'ScanCodeInfo.ScanType'),
        scanResult: reqText(info, 'ScanResult', 'ScanCodeInfo.ScanResult'),
      };
    }
    case 'pic_sysphoto':
    case 'pic_photo_or_album':
    case 'pic_weixin': {
      const info = reqObject(f, 'SendPicsInfo');
      const picList = optObject(info, 'PicList', 'SendPicsInfo.PicList') ?? {};
      const items = objectsOf(picList['item'], 'SendPicsInfo.PicList.item');
      return {
        ...base,
        event,
        eventKey: reqText(f, 'EventKey'),
        count: reqUint(info, 'Count', 'SendPicsInfo.Count'),
        picMd5Sums: items.map((item) => reqText(item, 'PicMd5Sum', 'SendPicsInfo.PicList.item.PicMd5Sum')),
      };
    }
    case 'location_select': {
      const info = reqObject(f, 'SendLocationInfo');
      const msg: Mutable<LocationSelectEvent> = {
        ...base,
        event,
        eventKey: reqText(f, 'EventKey'),
        locationX: reqText(info, 'Location_X', 'SendLocationInfo.Location_X'),
        locationY: reqText(info, 'Location_Y', 'SendLocationInfo.Location_Y'),
        scale: reqText(info, 'Scale', 'SendLocationInfo.Scale'),
        label: reqText(info, 'Label', 'SendLocationInfo.Label'),
      };
      const poiname = optText(info, 'Poiname', 'SendLocationInfo.Poiname');
      if (poiname !== undefined) msg.poiname = poiname;
      return msg;
    }
    case 'TEMPLATESENDJOBFINISH':
      return { ...base, event, msgId: reqId(f, 'MsgID'), status: reqText(f, 'Status') };
    case 'MASSSENDJOBFINISH': {
      const msg: Mutable<MassSendJobFinishEvent> = {
        ...base,
        event,
        msgId: reqId(f, 'MsgID'),
        status: reqText(f, 'Status'),
        totalCount: reqUint(f, 'TotalCount'),
        filterCount: reqUint(f, 'FilterCount'),
        sentCount: reqUint(f, 'SentCount'),
        errorCount: reqUint(f, 'ErrorCount'),
      };
      const copyright = optObject(f, 'CopyrightCheckResult');
      if (copyright !== undefined) msg.copyrightCheckResult = copyright;
      const articleUrls = optObject(f, 'ArticleUrlResult');
      if (articleUrls !== undefined) msg.articleUrlResult = articleUrls;
      return msg;
    }
    case 'PUBLISHJOBFINISH': {
      const info = reqObject(f, 'PublishEventInfo');
      const detail = optObject(info, 'article_detail', 'PublishEventInfo.article_detail') ?? {};
      const articles: PublishedArticle[] = objectsOf(detail['item'], 'PublishEventInfo.article_detail.item').map(
        (item) => ({
          idx: reqText(item, 'idx', 'PublishEventInfo.article_detail.item.idx'),
          articleUrl: reqText(item, 'article_url', 'PublishEventInfo.article_detail.item.article_url'),
        }),
      );
      const msg: Mutable<PublishJobFinishEvent> = {
        ...base,
        event,
        publishId: reqText(info, 'publish_id', 'PublishEventInfo.publish_id'),
        publishStatus: reqText(info, 'publish_status', 'PublishEventInfo.publish_status'),
        articles,
        failIdx: textsOf(info['fail_idx'], 'PublishEventInfo.fail_idx'),
      };
      const articleId = optText(info, 'article_id', 'PublishEventInfo.article_id');
      if (articleId !== undefined) msg.articleId = articleId;
      return msg;
    }
    case 'subscribe_msg_popup_event':
    case 'subscribe_msg_change_event':
    case 'subscribe_msg_sent_event': {
      const element = SUBSCRIBE_MSG_ELEMENT[event];
      const container = reqObject(f, element);
      const path = `${element}.List`;
      return { ...base, event, list: objectsOf(container['List'], path).map((item) => subscribeMsgItem(item, path)) };
    }
    case 'kf_create_session':
    case 'kf_close_session':
      return { ...base, event, kfAccount: reqText(f, 'KfAccount') };
    case 'kf_switch_session':
      return {
        ...base,
        event,
        fromKfAccount: reqText(f, 'FromKfAccount'),
        toKfAccount: reqText(f, 'ToKfAccount'),
      };
    default: {
      const msg: Mutable<OtherEvent> = { ...base, event: 'other', eventName: event, raw: f };
      const eventKey = optText(f, 'EventKey');
      if (eventKey !== undefined) msg.eventKey = eventKey;
      return msg;
    }
  }
}

const SUBSCRIBE_MSG_OPTIONAL = [
  ['SubscribeStatusString', 'subscribeStatusString'],
  ['PopupScene', 'popupScene'],
  ['MsgID', 'msgId'],
  ['ErrorCode', 'errorCode'],
  ['ErrorStatus', 'errorStatus'],
] as const;

function subscribeMsgItem(item: XmlObject, path: string): SubscribeMsgItem {
  const out: Mutable<SubscribeMsgItem> = { templateId: reqText(item, 'TemplateId', `${path}.TemplateId`) };
  for (const [tag, key] of SUBSCRIBE_MSG_OPTIONAL) {
    const value = optText(item, tag, `${path}.${tag}`);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/**
 * Parses a plain push body (or a decrypted safe-mode plaintext) into an {@link InboundMessage}:
 * {@link parseXml} then {@link toInboundMessage}.
 *
 * @throws {@link WxError} `WX_ERR_XML` (see both functions).
 */
export function parseInboundMessage(xml: string): InboundMessage {
  return toInboundMessage(parseXml(xml));
}

/** The fields of an encrypted push body that the gateway needs before decrypting. */
export interface EncryptedEnvelope {
  /** The Official Account's original id, when the body carries it. */
  readonly toUserName?: string;
  /** Base64 ciphertext, as sent. */
  readonly encrypt: string;
}

/**
 * Reads `<Encrypt>` (and `<ToUserName>`) from a safe-mode or compatible-mode body.
 * docs/wechat-protocol.md §3.2, §4.4.
 *
 * @throws {@link WxError} `WX_ERR_XML` when the body is not valid XML or `Encrypt` is missing or empty.
 */
export function readEncryptedEnvelope(xml: string): EncryptedEnvelope {
  const fields = parseXml(xml);
  const encrypt = reqText(fields, 'Encrypt');
  if (encrypt.length === 0) throw xmlError('Encrypt is empty');
  const toUserName = optText(fields, 'ToUserName');
  return toUserName === undefined ? { encrypt } : { toUserName, encrypt };
}

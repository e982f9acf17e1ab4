/**
 * Narrowing a parsed push into the typed {@link InboundMessage} union: normal messages, events,
 * and the `unknown` / `other` fallbacks that keep every field of a type this code does not know.
 *
 * Pure: an {@link XmlObject} (or an XML string) in, a typed message or a `WX_ERR_XML` error naming
 * the offending field out, never user content.
 *
 * docs/wechat-protocol.md §5 (messages), §6 (events).
 *
 * @module
 */
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
} from './messages.js';
import { objectsOf, optId, optObject, optText, reqId, reqObject, reqText, reqUint, textsOf } from './xml-fields.js';
import { parseXml } from './xml-parse.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function pushBase(f: XmlObject): PushBase {
  return {
    toUserName: reqText(f, 'ToUserName'),
    fromUserName: reqText(f, 'FromUserName'),
    createTime: reqUint(f, 'CreateTime'),
  };
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
  // `MsgId` is optional: a push without one is still a message (WeChat retries a refused push,
  // then drops it), deduplicated by sender, `CreateTime` and `MsgType`.
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

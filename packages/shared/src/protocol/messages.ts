/**
 * Typed inbound WeChat Official Account pushes: normal messages, events, and an `unknown` fallback.
 *
 * Every variant is a plain, JSON-serialisable object (strings, numbers, arrays, plain objects): the
 * gateway enqueues it as-is. Optional fields are *absent* when WeChat did not send them, never
 * `undefined`. 64-bit ids (`MsgId`, `MsgID`, `MsgDataId`) and coordinates stay the strings received.
 *
 * Docs: receiving messages
 * https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html ,
 * event pushes
 * https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_event_pushes.html ,
 * menu events
 * https://developers.weixin.qq.com/doc/offiaccount/Custom_Menus/Custom_Menu_Push_Events.html
 * (docs/wechat-protocol.md §5, §6).
 *
 * @module
 */

/** A parsed XML element: text, an object of child elements, or repeated elements. */
export type XmlValue = string | XmlObject | readonly XmlValue[];

/** Child elements by tag name. `item` and `List` elements are always arrays. */
export interface XmlObject {
  readonly [tagName: string]: XmlValue;
}

/** Fields every push carries (docs/wechat-protocol.md §5, §6). */
export interface PushBase {
  /** The Official Account's original id (`gh_…`). */
  readonly toUserName: string;
  /** The user's OpenID. */
  readonly fromUserName: string;
  /** Unix seconds. */
  readonly createTime: number;
}

/** Fields every normal (non-event) message carries (docs/wechat-protocol.md §5). */
export interface MessageBase extends PushBase {
  /**
   * 64-bit id, kept as the decimal string received (it exceeds `Number.MAX_SAFE_INTEGER`). Absent
   * when WeChat sent none (seen in the wild): such a message is deduplicated by
   * `FromUserName|CreateTime|MsgType` instead.
   */
  readonly msgId?: string;
  /** Present only when the message was sent from an article. */
  readonly msgDataId?: string;
  /** Which article of a multi-article post (from `"1"`), with `msgDataId`. */
  readonly idx?: string;
}

/** `MsgType=text`. */
export interface TextMessage extends MessageBase {
  readonly kind: 'text';
  /** Exactly as sent: never trimmed. */
  readonly content: string;
  /** Set when the user tapped an option of a `msgmenu` customer-service message. */
  readonly bizmsgmenuid?: string;
}

/** `MsgType=image`. */
export interface ImageMessage extends MessageBase {
  readonly kind: 'image';
  readonly picUrl?: string;
  /** Downloadable via temporary-media *get* for 3 days. */
  readonly mediaId?: string;
}

/** `MsgType=voice`. */
export interface VoiceMessage extends MessageBase {
  readonly kind: 'voice';
  readonly mediaId?: string;
  /** `amr`, `speex`, … */
  readonly format?: string;
  /** Speech-recognition text, only when enabled (being retired; often empty). */
  readonly recognition?: string;
}

/** `MsgType=video` or `MsgType=shortvideo`. */
export interface VideoMessage extends MessageBase {
  readonly kind: 'video' | 'shortvideo';
  readonly mediaId?: string;
  readonly thumbMediaId?: string;
}

/** `MsgType=location`. Numbers are kept as the strings received. */
export interface LocationMessage extends MessageBase {
  readonly kind: 'location';
  /** `Location_X`: latitude. */
  readonly locationX: string;
  /** `Location_Y`: longitude. */
  readonly locationY: string;
  /** Map zoom. */
  readonly scale?: string;
  readonly label?: string;
}

/** `MsgType=link`. */
export interface LinkMessage extends MessageBase {
  readonly kind: 'link';
  readonly title?: string;
  readonly description?: string;
  readonly url: string;
}

/** `MsgType=file` (documented as unsupported for Official Accounts, but seen in the wild). */
export interface FileMessage extends MessageBase {
  readonly kind: 'file';
  readonly title?: string;
  readonly description?: string;
  readonly fileKey?: string;
  readonly fileMd5?: string;
  readonly fileTotalLen?: string;
}

/** A normal user message (`MsgType` ≠ `event`) of a known type. */
export type UserMessage =
  | TextMessage
  | ImageMessage
  | VoiceMessage
  | VideoMessage
  | LocationMessage
  | LinkMessage
  | FileMessage;

/** Fields every event carries (docs/wechat-protocol.md §6). Events have no `MsgId`. */
export interface EventBase extends PushBase {
  readonly kind: 'event';
}

/** `subscribe`, plain or through a parametric QR code. */
export interface SubscribeEvent extends EventBase {
  readonly event: 'subscribe';
  /** `qrscene_<scene>` for a QR follow; may be present and empty for a plain follow. */
  readonly eventKey?: string;
  /** QR ticket, for a QR follow. */
  readonly ticket?: string;
  /** The scene value (`eventKey` without its `qrscene_` prefix), for a QR follow. */
  readonly scene?: string;
}

/** `unsubscribe`: the doc asks to delete the user's data. */
export interface UnsubscribeEvent extends EventBase {
  readonly event: 'unsubscribe';
}

/** `SCAN`: an already-following user scanned a parametric QR code. */
export interface ScanEvent extends EventBase {
  readonly event: 'SCAN';
  /** The scene value (no `qrscene_` prefix). */
  readonly eventKey: string;
  readonly ticket?: string;
}

/** `LOCATION`: automatic location report. Numbers kept as strings. */
export interface LocationEvent extends EventBase {
  readonly event: 'LOCATION';
  readonly latitude: string;
  readonly longitude: string;
  readonly precision: string;
}

/** `CLICK`: click-type menu button. */
export interface ClickEvent extends EventBase {
  readonly event: 'CLICK';
  readonly eventKey: string;
}

/** `VIEW`: menu link opened (opens no customer-service window). */
export interface ViewEvent extends EventBase {
  readonly event: 'VIEW';
  /** The URL. */
  readonly eventKey: string;
  readonly menuId?: string;
}

/** `scancode_push` / `scancode_waitmsg` menu events. */
export interface ScanCodeEvent extends EventBase {
  readonly event: 'scancode_push' | 'scancode_waitmsg';
  readonly eventKey: string;
  /** `ScanCodeInfo.ScanType`, e.g. `qrcode`. */
  readonly scanType: string;
  /** `ScanCodeInfo.ScanResult`. */
  readonly scanResult: string;
}

/** `pic_sysphoto` / `pic_photo_or_album` / `pic_weixin` menu events (the pictures arrive as `image` messages). */
export interface PicEvent extends EventBase {
  readonly event: 'pic_sysphoto' | 'pic_photo_or_album' | 'pic_weixin';
  readonly eventKey: string;
  /** `SendPicsInfo.Count`. */
  readonly count: number;
  /** `SendPicsInfo.PicList.item[].PicMd5Sum`, in order. */
  readonly picMd5Sums: readonly string[];
}

/** `location_select` menu event (`SendLocationInfo`). Numbers kept as strings. */
export interface LocationSelectEvent extends EventBase {
  readonly event: 'location_select';
  readonly eventKey: string;
  readonly locationX: string;
  readonly locationY: string;
  readonly scale: string;
  /** Not trimmed: the official sample starts with a space. */
  readonly label: string;
  readonly poiname?: string;
}

/** `view_miniprogram`: a menu button opened a mini program. */
export interface ViewMiniprogramEvent extends EventBase {
  readonly event: 'view_miniprogram';
  /** The page path. */
  readonly eventKey: string;
  readonly menuId?: string;
}

/** `TEMPLATESENDJOBFINISH`: template-message delivery result. */
export interface TemplateSendJobFinishEvent extends EventBase {
  readonly event: 'TEMPLATESENDJOBFINISH';
  /** From `MsgID` (capital D): the id returned by the template send API. */
  readonly msgId: string;
  /** `success`, `failed:user block`, `failed: system failed`, … */
  readonly status: string;
}

/** `MASSSENDJOBFINISH`: broadcast finished. */
export interface MassSendJobFinishEvent extends EventBase {
  readonly event: 'MASSSENDJOBFINISH';
  /** From `MsgID`. */
  readonly msgId: string;
  /** `send success`, `send fail`, `err(<code>)`. */
  readonly status: string;
  readonly totalCount: number;
  readonly filterCount: number;
  readonly sentCount: number;
  readonly errorCount: number;
  /** The `CopyrightCheckResult` element as parsed, when present. */
  readonly copyrightCheckResult?: XmlObject;
  /** The `ArticleUrlResult` element as parsed, when present. */
  readonly articleUrlResult?: XmlObject;
}

/** One published article of a {@link PublishJobFinishEvent}. */
export interface PublishedArticle {
  readonly idx: string;
  readonly articleUrl: string;
}

/** `PUBLISHJOBFINISH`: a publish (发布) job finished (`PublishEventInfo`). */
export interface PublishJobFinishEvent extends EventBase {
  readonly event: 'PUBLISHJOBFINISH';
  readonly publishId: string;
  /** `0` = success; other values are failures (see the freepublish doc). */
  readonly publishStatus: string;
  readonly articleId?: string;
  readonly articles: readonly PublishedArticle[];
  /** Indexes of failed articles, when any. */
  readonly failIdx: readonly string[];
}

/** One entry of a subscription-notification (订阅通知) event's `List`. */
export interface SubscribeMsgItem {
  readonly templateId: string;
  /** `accept` / `reject` (popup and change events). */
  readonly subscribeStatusString?: string;
  /** Popup events: where the popup was shown. */
  readonly popupScene?: string;
  /** Sent events: the message id (`MsgID`). */
  readonly msgId?: string;
  /** Sent events: `0` on success. */
  readonly errorCode?: string;
  /** Sent events: `success`, `fail:…`. */
  readonly errorStatus?: string;
}

/** `subscribe_msg_popup_event` / `subscribe_msg_change_event` / `subscribe_msg_sent_event`. */
export interface SubscribeMsgEvent extends EventBase {
  readonly event: 'subscribe_msg_popup_event' | 'subscribe_msg_change_event' | 'subscribe_msg_sent_event';
  /** The repeated `List` elements, in order. */
  readonly list: readonly SubscribeMsgItem[];
}

/** `kf_create_session` / `kf_close_session`: customer-service session state. */
export interface KfSessionEvent extends EventBase {
  readonly event: 'kf_create_session' | 'kf_close_session';
  readonly kfAccount: string;
}

/** `kf_switch_session`: the session moved between agents. */
export interface KfSwitchSessionEvent extends EventBase {
  readonly event: 'kf_switch_session';
  readonly fromKfAccount: string;
  readonly toKfAccount: string;
}

/**
 * Any other event (`qualification_verify_success`, card events, `debug_demo`, …). Acknowledge it;
 * `raw` keeps every field of the push.
 */
export interface OtherEvent extends EventBase {
  readonly event: 'other';
  /** The `Event` value as sent. */
  readonly eventName: string;
  readonly eventKey?: string;
  readonly raw: XmlObject;
}

/** A push with `MsgType=event`, discriminated on `event` (names compared exactly, as sent). */
export type InboundEvent =
  | SubscribeEvent
  | UnsubscribeEvent
  | ScanEvent
  | LocationEvent
  | ClickEvent
  | ViewEvent
  | ScanCodeEvent
  | PicEvent
  | LocationSelectEvent
  | ViewMiniprogramEvent
  | TemplateSendJobFinishEvent
  | MassSendJobFinishEvent
  | PublishJobFinishEvent
  | SubscribeMsgEvent
  | KfSessionEvent
  | KfSwitchSessionEvent
  | OtherEvent;

/** The `Event` names with a dedicated variant (everything else is {@link OtherEvent}). */
export type KnownEventName = Exclude<InboundEvent['event'], 'other'>;

/** A push whose `MsgType` is not known (e.g. `miniprogrampage`): tolerated, never thrown. */
export interface UnknownMessage extends PushBase {
  readonly kind: 'unknown';
  readonly msgType: string;
  /** `MsgId`, when the push has one. */
  readonly msgId?: string;
  /** Every field of the push. */
  readonly raw: XmlObject;
}

/** Every inbound push, discriminated on `kind` (then on `event` for events). */
export type InboundMessage = UserMessage | InboundEvent | UnknownMessage;

/**
 * The XML WeChat POSTs to a callback URL, for every message and event type of docs/wechat-protocol.md, built
 * from a small typed spec. Pure apart from the id source: {@link createInboundXmlBuilder} hands out
 * unique 64-bit MsgIds and reads a clock.
 *
 * docs/wechat-protocol.md §5 (messages), §6 (events), the `xml_samples` test vectors (the layouts imitated here: CDATA for
 * strings, bare numbers for CreateTime/MsgId/coordinates, one element per line).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { cdata } from '@wxrelay/shared';

/** A normal user message (docs/wechat-protocol.md §5). Omitted media ids and formats get plausible values. */
export type UserMessageSpec =
  /** `bizmsgmenuid`: the user tapped an option of a `msgmenu` message; `content` is the option text. */
  | { readonly type: 'text'; readonly content: string; readonly bizmsgmenuid?: string }
  | { readonly type: 'image'; readonly picUrl: string; readonly mediaId?: string }
  | { readonly type: 'voice'; readonly mediaId?: string; readonly format?: string; readonly recognition?: string }
  | { readonly type: 'video' | 'shortvideo'; readonly mediaId?: string; readonly thumbMediaId?: string }
  | {
      readonly type: 'location';
      readonly latitude: string;
      readonly longitude: string;
      readonly scale?: string;
      readonly label?: string;
    }
  | { readonly type: 'link'; readonly url: string; readonly title?: string; readonly description?: string };

/** An event push (docs/wechat-protocol.md §6), discriminated on `event` exactly as WeChat spells it. */
export type EventSpec =
  /** `scene` makes it a QR follow: `EventKey` = `qrscene_<scene>`, with a `Ticket`. */
  | { readonly type: 'event'; readonly event: 'subscribe'; readonly scene?: string; readonly ticket?: string }
  | { readonly type: 'event'; readonly event: 'unsubscribe' }
  /** `eventKey` is the scene value, without prefix. */
  | { readonly type: 'event'; readonly event: 'SCAN'; readonly eventKey: string; readonly ticket?: string }
  | {
      readonly type: 'event';
      readonly event: 'LOCATION';
      readonly latitude: string;
      readonly longitude: string;
      readonly precision?: string;
    }
  | { readonly type: 'event'; readonly event: 'CLICK'; readonly eventKey: string }
  /** `eventKey` is the URL (VIEW) or the page path (view_miniprogram). */
  | { readonly type: 'event'; readonly event: 'VIEW' | 'view_miniprogram'; readonly eventKey: string; readonly menuId?: string }
  | {
      readonly type: 'event';
      readonly event: 'scancode_push' | 'scancode_waitmsg';
      readonly eventKey: string;
      readonly scanResult: string;
      readonly scanType?: string;
    }
  | {
      readonly type: 'event';
      readonly event: 'pic_sysphoto' | 'pic_photo_or_album' | 'pic_weixin';
      readonly eventKey: string;
      readonly picMd5Sums: readonly string[];
    }
  | {
      readonly type: 'event';
      readonly event: 'location_select';
      readonly eventKey: string;
      readonly latitude: string;
      readonly longitude: string;
      readonly scale?: string;
      readonly label: string;
      readonly poiname?: string;
    }
  | {
      readonly type: 'event';
      readonly event: 'TEMPLATESENDJOBFINISH';
      /** The template send's id (`MsgID`); a fresh 64-bit id when omitted. */
      readonly msgId?: string;
      readonly status: string;
    }
  | {
      readonly type: 'event';
      readonly event: 'MASSSENDJOBFINISH';
      readonly msgId?: string;
      readonly status: string;
      readonly totalCount: number;
      readonly filterCount: number;
      readonly sentCount: number;
      readonly errorCount: number;
    }
  | {
      readonly type: 'event';
      readonly event: 'PUBLISHJOBFINISH';
      readonly publishId: string;
      readonly publishStatus: string;
      readonly articleId?: string;
      readonly articleUrls?: readonly string[];
    }
  | {
      readonly type: 'event';
      readonly event: 'subscribe_msg_popup_event' | 'subscribe_msg_change_event';
      readonly list: readonly { readonly templateId: string; readonly subscribeStatusString: string; readonly popupScene?: string }[];
    }
  | { readonly type: 'event'; readonly event: 'kf_create_session' | 'kf_close_session'; readonly kfAccount: string }
  | { readonly type: 'event'; readonly event: 'kf_switch_session'; readonly fromKfAccount: string; readonly toKfAccount: string }
  /** Any other event name (`user_info_modified`, card events, …), with an optional EventKey. */
  | { readonly type: 'event'; readonly event: 'other'; readonly eventName: string; readonly eventKey?: string };

/** Anything a user (or WeChat on their behalf) can push to the callback URL. */
export type InboundSpec = UserMessageSpec | EventSpec;

/** Who sends and when. */
export interface InboundAddress {
  /** The Official Account's original id (`gh_…`). */
  readonly toUserName: string;
  /** The user's OpenID. */
  readonly fromUserName: string;
  /** Unix seconds. */
  readonly createTime: number;
}

/** A built push: its XML and the identifiers WeChat (and a gateway's dedup) keys on. */
export interface BuiltInbound {
  readonly xml: string;
  /** `MsgId` of a normal message; absent for events (they dedup on FromUserName + CreateTime). */
  readonly msgId?: string;
  readonly createTime: number;
}

type Line = readonly [tag: string, value: string | undefined];

/** `<Tag><![CDATA[value]]></Tag>` per line; undefined values are left out. */
function strings(lines: readonly Line[]): string[] {
  return lines.flatMap(([tag, value]) => (value === undefined ? [] : [`<${tag}>${cdata(value)}</${tag}>`]));
}

function bare(tag: string, value: string | number): string {
  return `<${tag}>${value}</${tag}>`;
}

function userMessageBody(spec: UserMessageSpec, msgId: string): string[] {
  const head = strings([['MsgType', spec.type]]);
  let fields: string[];
  switch (spec.type) {
    case 'text':
      fields = strings([['Content', spec.content]]);
      break;
    case 'image':
      fields = strings([
        ['PicUrl', spec.picUrl],
        ['MediaId', spec.mediaId ?? `sim-image-${msgId}`],
      ]);
      break;
    case 'voice':
      fields = strings([
        ['MediaId', spec.mediaId ?? `sim-voice-${msgId}`],
        ['Format', spec.format ?? 'amr'],
        ['Recognition', spec.recognition],
      ]);
      break;
    case 'video':
    case 'shortvideo':
      fields = strings([
        ['MediaId', spec.mediaId ?? `sim-${spec.type}-${msgId}`],
        ['ThumbMediaId', spec.thumbMediaId ?? `sim-thumb-${msgId}`],
      ]);
      break;
    case 'location':
      // Numbers are not CDATA in WeChat's location message (the `msg-location` test vector).
      fields = [bare('Location_X', spec.latitude), bare('Location_Y', spec.longitude), bare('Scale', spec.scale ?? '15')];
      fields.push(...strings([['Label', spec.label ?? '']]));
      break;
    case 'link':
      fields = strings([
        ['Title', spec.title ?? spec.url],
        ['Description', spec.description ?? ''],
        ['Url', spec.url],
      ]);
      break;
  }
  const tail = [bare('MsgId', msgId)];
  if (spec.type === 'text' && spec.bizmsgmenuid !== undefined) tail.push(bare('bizmsgmenuid', spec.bizmsgmenuid));
  return [...head, ...fields, ...tail];
}

function eventBody(spec: EventSpec, nextId: () => string): string[] {
  const name = spec.event === 'other' ? spec.eventName : spec.event;
  const head = strings([
    ['MsgType', 'event'],
    ['Event', name],
  ]);
  switch (spec.event) {
    case 'subscribe':
      return spec.scene === undefined
        ? [...head, ...strings([['EventKey', '']])]
        : [...head, ...strings([
            ['EventKey', `qrscene_${spec.scene}`],
            ['Ticket', spec.ticket ?? `sim-ticket-${spec.scene}`],
          ])];
    case 'unsubscribe':
      return head;
    case 'SCAN':
      return [...head, ...strings([
        ['EventKey', spec.eventKey],
        ['Ticket', spec.ticket ?? `sim-ticket-${spec.eventKey}`],
      ])];
    case 'LOCATION':
      return [...head, bare('Latitude', spec.latitude), bare('Longitude', spec.longitude), bare('Precision', spec.precision ?? '30.000000')];
    case 'CLICK':
      return [...head, ...strings([['EventKey', spec.eventKey]])];
    case 'VIEW':
    case 'view_miniprogram':
      return [...head, ...strings([['EventKey', spec.eventKey]]), ...(spec.menuId === undefined ? [] : [bare('MenuId', spec.menuId)])];
    case 'scancode_push':
    case 'scancode_waitmsg':
      return [
        ...head,
        ...strings([['EventKey', spec.eventKey]]),
        `<ScanCodeInfo>${strings([['ScanType', spec.scanType ?? 'qrcode'], ['ScanResult', spec.scanResult]]).join('')}</ScanCodeInfo>`,
      ];
    case 'pic_sysphoto':
    case 'pic_photo_or_album':
    case 'pic_weixin': {
      const items = spec.picMd5Sums.map((sum) => `<item>${strings([['PicMd5Sum', sum]]).join('')}</item>`).join('');
      return [
        ...head,
        ...strings([['EventKey', spec.eventKey]]),
        `<SendPicsInfo>${bare('Count', spec.picMd5Sums.length)}<PicList>${items}</PicList></SendPicsInfo>`,
      ];
    }
    case 'location_select': {
      const info = strings([
        ['Location_X', spec.latitude],
        ['Location_Y', spec.longitude],
        ['Scale', spec.scale ?? '15'],
        ['Label', spec.label],
        ['Poiname', spec.poiname ?? ''],
      ]).join('');
      return [...head, ...strings([['EventKey', spec.eventKey]]), `<SendLocationInfo>${info}</SendLocationInfo>`];
    }
    case 'TEMPLATESENDJOBFINISH':
      return [...head, bare('MsgID', spec.msgId ?? nextId()), ...strings([['Status', spec.status]])];
    case 'MASSSENDJOBFINISH':
      return [
        ...head,
        bare('MsgID', spec.msgId ?? nextId()),
        ...strings([['Status', spec.status]]),
        bare('TotalCount', spec.totalCount),
        bare('FilterCount', spec.filterCount),
        bare('SentCount', spec.sentCount),
        bare('ErrorCount', spec.errorCount),
      ];
    case 'PUBLISHJOBFINISH': {
      const urls = spec.articleUrls ?? [];
      const items = urls.map((url, i) => `<item>${bare('idx', i + 1)}${strings([['article_url', url]]).join('')}</item>`).join('');
      const articleId = spec.articleId === undefined ? '' : strings([['article_id', spec.articleId]]).join('');
      const detail = urls.length === 0 ? '' : `<article_detail>${bare('count', urls.length)}${items}</article_detail>`;
      return [
        ...head,
        `<PublishEventInfo>${bare('publish_id', spec.publishId)}${bare('publish_status', spec.publishStatus)}${articleId}${detail}</PublishEventInfo>`,
      ];
    }
    case 'subscribe_msg_popup_event':
    case 'subscribe_msg_change_event': {
      const element = spec.event === 'subscribe_msg_popup_event' ? 'SubscribeMsgPopupEvent' : 'SubscribeMsgChangeEvent';
      const lists = spec.list.map(
        (item) =>
          `<List>${strings([['TemplateId', item.templateId], ['SubscribeStatusString', item.subscribeStatusString]]).join('')}` +
          `${item.popupScene === undefined ? '' : bare('PopupScene', item.popupScene)}</List>`,
      );
      return [...head, `<${element}>${lists.join('')}</${element}>`];
    }
    case 'kf_create_session':
    case 'kf_close_session':
      return [...head, ...strings([['KfAccount', spec.kfAccount]])];
    case 'kf_switch_session':
      return [...head, ...strings([['FromKfAccount', spec.fromKfAccount], ['ToKfAccount', spec.toKfAccount]])];
    case 'other':
      return [...head, ...strings([['EventKey', spec.eventKey]])];
  }
}

/**
 * The XML of one push. Normal messages carry `msgId`; an event spec that needs an id of its own
 * (`MsgID` of the job-finished events) draws one from `nextId`.
 */
export function buildInboundXml(spec: InboundSpec, address: InboundAddress, ids: { msgId: string; nextId: () => string }): string {
  const lines = [
    ...strings([
      ['ToUserName', address.toUserName],
      ['FromUserName', address.fromUserName],
    ]),
    bare('CreateTime', address.createTime),
    ...(spec.type === 'event' ? eventBody(spec, ids.nextId) : userMessageBody(spec, ids.msgId)),
  ];
  return `<xml>\n${lines.join('\n')}\n</xml>`;
}

/** Smallest MsgId handed out: 2^60, so every id exceeds `Number.MAX_SAFE_INTEGER` as real ones do. */
const MSG_ID_FLOOR = 1n << 60n;

/** Builds pushes for one Official Account with unique MsgIds. */
export interface InboundXmlBuilder {
  /** A push from `openid`; CreateTime is the clock's current second. */
  build(openid: string, spec: InboundSpec): BuiltInbound;
  /** A fresh 64-bit id (> 2^53) as a decimal string. */
  nextMsgId(): string;
}

export interface InboundXmlBuilderOptions {
  /** The Official Account's original id (`gh_…`), the pushes' ToUserName. */
  readonly account: string;
  /** Clock in ms, default `Date.now`. */
  readonly now?: () => number;
}

/**
 * A push builder whose MsgIds are unique per builder (a counter) and, across builders and
 * processes, with overwhelming probability (the counter starts at a random 62-bit offset above
 * 2^60), so a gateway's dedup never mistakes two simulated messages for a retry.
 */
export function createInboundXmlBuilder(options: InboundXmlBuilderOptions): InboundXmlBuilder {
  const now = options.now ?? Date.now;
  let counter = MSG_ID_FLOOR + (randomBytes(8).readBigUInt64BE() >> 4n);
  const nextMsgId = (): string => {
    counter += 1n;
    return counter.toString();
  };
  return {
    nextMsgId,
    build(openid, spec) {
      const createTime = Math.floor(now() / 1000);
      const address = { toUserName: options.account, fromUserName: openid, createTime };
      if (spec.type === 'event') return { xml: buildInboundXml(spec, address, { msgId: '', nextId: nextMsgId }), createTime };
      const msgId = nextMsgId();
      return { xml: buildInboundXml(spec, address, { msgId, nextId: nextMsgId }), msgId, createTime };
    },
  };
}

/** The events that open a 3-send / 1-minute window (docs/wechat-protocol.md §9.3). */
const WINDOW_EVENTS: ReadonlySet<EventSpec['event']> = new Set(['subscribe', 'SCAN', 'CLICK', 'scancode_push', 'scancode_waitmsg']);

/**
 * Which customer-service window a push opens (docs/wechat-protocol.md §9.3): a message opens the 5-send / 48-hour one;
 * follow, QR scan and the click / scancode menu events open the 3-send / 1-minute one; anything
 * else (VIEW, LOCATION, job reports…) opens none. A tap on a `msgmenu` option (a text with
 * `bizmsgmenuid`) counts as a menu click, as the English guide page says ([UNCERTAIN] in docs/wechat-protocol.md §9.3).
 */
export function windowTriggerOf(spec: InboundSpec): 'message' | 'event' | undefined {
  if (spec.type !== 'event') return spec.type === 'text' && spec.bizmsgmenuid !== undefined ? 'event' : 'message';
  return WINDOW_EVENTS.has(spec.event) ? 'event' : undefined;
}

import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { parseInboundMessage } from '@wxrelay/shared';
import Fastify from 'fastify';
import { chatPage } from './chat-page.js';
import { WECHAT_MAX_TRIES, sendCallback, type CallbackMode } from './callback-client.js';
import { createInboundXmlBuilder, windowTriggerOf, type BuiltInbound } from './inbound-xml.js';
import { createSimEventHub, type CallbackEvent, type SimEventHub } from './sim-events.js';
import type { ReplyMode } from './reply-mode.js';
import { SimSpecError, countApiCalls, simRoutes, type SimSendRequest, type SimulatorInfo } from './sim-routes.js';
import { createUserDirectory } from './sim-users.js';
import type { FakeWechatApi } from './wechat-api.js';
import { createFakeWechatContext, fakeWechatHandle } from './wechat-api/handle.js';
import { fakeWechatApiPlugin } from './wechat-api/plugin.js';

export type { ApiCallCounts, SimulatorInfo, SimSendRequest } from './sim-routes.js';
export type { AttemptEvent, CallbackEvent, DeliveryEvent, InboundEvent, SimEvent, TypingEvent, UnauthorizedEvent } from './sim-events.js';
export { openidFor } from './sim-users.js';

export interface SimulatorOptions {
  /** The gateway's callback URL, e.g. `http://127.0.0.1:3000/wx`. */
  readonly gatewayUrl: string;
  readonly token: string;
  readonly appId: string;
  readonly appSecret: string;
  /** Required for `compat` and `safe`. */
  readonly encodingAesKey?: string;
  /** Default mode of every push (a send may override it). */
  readonly mode: CallbackMode;
  /** Default 0 (any free port). */
  readonly port?: number;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** The Official Account's original id (`gh_…`); default derived from the AppID. */
  readonly account?: string;
  /** Per-try callback timeout; default WeChat's 5 s. */
  readonly timeoutMs?: number;
  /** Callback tries; default 3. */
  readonly maxTries?: number;
  /** Apply the 48-hour window and quotas to custom/send; default true. */
  readonly enforceWindow?: boolean;
  /**
   * Play an account without the customer-service API: custom/send and custom/typing answer 48001
   * (see the fake API's `unverified`). Default false.
   */
  readonly unverified?: boolean;
  /** The stack's REPLY_MODE, shown on the chat page and in `GET /sim/config`; changes nothing here. */
  readonly replyMode?: ReplyMode;
  /** Clock in ms, default `Date.now`. */
  readonly now?: () => number;
}

/** A running simulator: WeChat's side of the callbacks, the fake WeChat API, the chat page. */
export interface Simulator {
  /** Base URL: the page at `/`, the API at `/cgi-bin/...` (point WECHAT_API_BASE_URL here), `/sim/...`. */
  readonly url: string;
  /** The fake WeChat API served on the same port (its `close` closes the whole simulator). */
  readonly api: FakeWechatApi;
  readonly info: SimulatorInfo;
  /** Sends one push as a user, as `POST /sim/send` does. */
  send(request: SimSendRequest): Promise<CallbackEvent>;
  close(): Promise<void>;
}

function defaultAccount(appId: string): string {
  return `gh_${createHash('sha1').update(appId).digest('hex').slice(0, 12)}`;
}

/** The events to publish for the fake API's deliveries and typing, under the users' names. */
function relayApiEvents(api: FakeWechatApi, hub: SimEventHub, nameOf: (openid: string) => string): void {
  api.on('delivery', (delivery) => {
    hub.publish({
      type: 'delivery',
      user: nameOf(delivery.touser),
      openid: delivery.touser,
      at: delivery.at,
      msgtype: delivery.msgtype,
      body: delivery.body,
    });
  });
  api.on('typing', (typing) => {
    hub.publish({ type: 'typing', user: nameOf(typing.touser), openid: typing.touser, at: typing.at, command: typing.command });
  });
  api.on('unauthorized', (call) => {
    // A refusal for no one in particular (no readable touser) is counted, not shown.
    if (call.touser === undefined) return;
    hub.publish({
      type: 'unauthorized',
      user: nameOf(call.touser),
      openid: call.touser,
      at: call.at,
      path: call.path,
      errcode: 48001,
      ...(call.what === undefined ? {} : { what: call.what }),
    });
  });
}

/**
 * Starts the simulator on one port: the fake WeChat API (`/cgi-bin/...`), the chat page (`/`)
 * and the JSON/SSE API for the page and the CLI (`/sim/...`).
 *
 * A push opens the user's customer-service window in the fake API first, as WeChat does when the
 * user acts (docs/wechat-protocol.md §9.3), then goes to the gateway with WeChat's signing, timing and retries.
 */
export async function startSimulator(options: SimulatorOptions): Promise<Simulator> {
  const now = options.now ?? Date.now;
  const account = options.account ?? defaultAccount(options.appId);
  const unverified = options.unverified ?? false;
  const info: SimulatorInfo = {
    account,
    appId: options.appId,
    mode: options.mode,
    gatewayUrl: options.gatewayUrl,
    unverified,
    ...(options.replyMode === undefined ? {} : { replyMode: options.replyMode }),
  };
  const { context, abort } = createFakeWechatContext({
    appId: options.appId,
    appSecret: options.appSecret,
    now,
    unverified,
    ...(options.enforceWindow === undefined ? {} : { enforceWindow: options.enforceWindow }),
  });
  const hub = createSimEventHub();
  const users = createUserDirectory(account);
  const builder = createInboundXmlBuilder({ account, now });
  const closing = new AbortController();
  let refs = 0;

  async function send(request: SimSendRequest): Promise<CallbackEvent> {
    const { user, message: spec } = request;
    const mode = request.mode ?? options.mode;
    const openid = users.openidOf(user);
    let built: BuiltInbound;
    try {
      built = builder.build(openid, spec);
      parseInboundMessage(built.xml);
    } catch (err) {
      throw new SimSpecError(`message does not make a valid ${spec.type} push: ${err instanceof Error ? err.message : String(err)}`);
    }
    const trigger = windowTriggerOf(spec);
    if (trigger !== undefined) context.windows.interact(openid, trigger, now());
    refs += 1;
    const ref = `r${refs}`;
    hub.publish({
      type: 'inbound',
      ref,
      user,
      openid,
      at: now(),
      mode,
      spec,
      ...(built.msgId === undefined ? {} : { msgId: built.msgId }),
    });
    const result = await sendCallback({
      gatewayUrl: options.gatewayUrl,
      token: options.token,
      appId: options.appId,
      mode,
      xml: built.xml,
      signal: closing.signal,
      onAttempt(attempt) {
        // The settling try, and the last (no other follows), are told by the callback event below.
        if (attempt.ended === 'ack' || attempt.ended === 'reply' || attempt.attempt >= (options.maxTries ?? WECHAT_MAX_TRIES)) return;
        hub.publish({ type: 'attempt', ref, user, openid, at: now(), attempt });
      },
      ...(options.encodingAesKey === undefined ? {} : { encodingAesKey: options.encodingAesKey }),
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.maxTries === undefined ? {} : { maxTries: options.maxTries }),
    });
    return hub.publish({
      type: 'callback',
      ref,
      user,
      openid,
      at: now(),
      outcome: result.outcome,
      tries: result.tries,
      attempts: result.attempts,
      ...(result.status === undefined ? {} : { status: result.status }),
      ...(result.reply === undefined ? {} : { reply: result.reply }),
      ...(result.replyAttempt === undefined ? {} : { replyAttempt: result.replyAttempt }),
      ...(result.replyKind === undefined ? {} : { replyKind: result.replyKind }),
      ...(result.gatewayAttempt === undefined ? {} : { gatewayAttempt: result.gatewayAttempt }),
      ...(result.error === undefined ? {} : { error: result.error }),
    }) as CallbackEvent;
  }

  // forceCloseConnections: close() must not wait on event streams or held API calls.
  const app = Fastify({ logger: false, forceCloseConnections: true, bodyLimit: 16 * 1024 * 1024 });
  await app.register(fakeWechatApiPlugin, { context });
  await app.register(simRoutes, { hub, send, info, apiCalls: () => countApiCalls({ unverified, ...context.records }) });
  await app.register(chatPage);
  await app.listen({ port: options.port ?? 0, host: options.host ?? '127.0.0.1' });
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  const close = async (): Promise<void> => {
    closing.abort();
    abort.abort();
    await app.close();
  };
  const api = fakeWechatHandle(context, url, close);
  relayApiEvents(api, hub, (openid) => users.nameOf(openid));
  return { url, api, info, send, close };
}

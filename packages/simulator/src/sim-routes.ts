import type { FastifyPluginCallback } from 'fastify';
import type { CallbackMode } from './callback-client.js';
import type { InboundSpec } from './inbound-xml.js';
import type { ReplyMode } from './reply-mode.js';
import type { CallbackEvent, SimEvent, SimEventHub } from './sim-events.js';
import type { FakeWechatApi } from './wechat-api.js';

/** What the simulator tells the page and the CLI about itself (`GET /sim/config`). */
export interface SimulatorInfo {
  readonly account: string;
  readonly appId: string;
  readonly mode: CallbackMode;
  readonly gatewayUrl: string;
  /** The fake API plays an account without the customer-service API (custom/send → 48001). */
  readonly unverified: boolean;
  /** The stack's REPLY_MODE, when whoever started the simulator said (shown, not acted on). */
  readonly replyMode?: ReplyMode;
}

/**
 * `GET /sim/api-calls`: what the fake WeChat API was asked, for a test or a person checking a
 * running stack — e.g. "no customer-service message was delivered, 48001 answered 3 times".
 */
export interface ApiCallCounts {
  readonly unverified: boolean;
  /** Accepted custom/send calls. */
  readonly deliveries: number;
  /** Accepted custom/typing calls. */
  readonly typing: number;
  readonly tokenFetches: number;
  /** custom/send and custom/typing calls refused with 48001 (unverified account), by path. */
  readonly unauthorized: { readonly send: number; readonly typing: number };
  /** Every API call by path, then by the errcode answered (`"0"` for success). */
  readonly answered: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

/** {@link ApiCallCounts} of a fake API's records as they stand. */
export function countApiCalls(api: Pick<FakeWechatApi, 'unverified' | 'calls' | 'deliveries' | 'typing' | 'tokenFetches' | 'unauthorized'>): ApiCallCounts {
  const answered: Record<string, Record<string, number>> = {};
  for (const call of api.calls) {
    const byCode = (answered[call.path] ??= {});
    byCode[String(call.errcode)] = (byCode[String(call.errcode)] ?? 0) + 1;
  }
  return {
    unverified: api.unverified,
    deliveries: api.deliveries.length,
    typing: api.typing.length,
    tokenFetches: api.tokenFetches.length,
    unauthorized: {
      send: api.unauthorized.filter((c) => c.path === '/cgi-bin/message/custom/send').length,
      typing: api.unauthorized.filter((c) => c.path === '/cgi-bin/message/custom/typing').length,
    },
    answered,
  };
}

/** The body of `POST /sim/send`. */
export interface SimSendRequest {
  readonly user: string;
  readonly message: InboundSpec;
  /** Overrides the simulator's mode for this push. */
  readonly mode?: CallbackMode;
}

/** Sends one push as `user`; rejects with a `SimSpecError` when the spec cannot be built. */
export type SimSend = (request: SimSendRequest) => Promise<CallbackEvent>;

/** A message spec that does not describe a valid push (missing or mistyped field). */
export class SimSpecError extends Error {
  override readonly name = 'SimSpecError';
}

export interface SimRoutesOptions {
  readonly hub: SimEventHub;
  readonly send: SimSend;
  readonly info: SimulatorInfo;
  /** The counts `GET /sim/api-calls` answers. */
  readonly apiCalls: () => ApiCallCounts;
}

const MODES = ['plain', 'compat', 'safe'];

const SendBody = {
  type: 'object',
  required: ['user', 'message'],
  additionalProperties: false,
  properties: {
    user: { type: 'string', minLength: 1, maxLength: 64 },
    mode: { type: 'string', enum: MODES },
    message: {
      type: 'object',
      required: ['type'],
      properties: {
        type: { type: 'string', enum: ['text', 'image', 'voice', 'video', 'shortvideo', 'location', 'link', 'event'] },
        event: { type: 'string', minLength: 1 },
      },
    },
  },
} as const;

const EventsQuery = {
  type: 'object',
  properties: {
    /** Comma-separated user names; every user when absent. */
    user: { type: 'string' },
    /** `1`: first replay the recent history of these users. */
    replay: { type: 'string', enum: ['0', '1'] },
  },
} as const;

/** How often an idle event stream gets a comment line, so proxies and clients keep it open. */
const HEARTBEAT_MS = 15_000;

function usersOf(param: string | undefined): ReadonlySet<string> | undefined {
  const names = (param ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  return names.length === 0 ? undefined : new Set(names);
}

function sseMessage(event: SimEvent): string {
  return `id: ${event.seq}\ndata: ${JSON.stringify(event)}\n\n`;
}

/**
 * The simulator's own JSON API, for the chat page and the CLI: `POST /sim/send` (one push as a
 * user; answers the callback result), `GET /sim/events` (Server-Sent Events of everything that
 * happens to the users), `GET /sim/config`, `GET /sim/api-calls`.
 */
export const simRoutes: FastifyPluginCallback<SimRoutesOptions> = (app, { hub, send, info, apiCalls }, done) => {
  app.get('/sim/config', () => info);
  app.get('/sim/api-calls', () => apiCalls());

  app.post<{ Body: SimSendRequest }>('/sim/send', { schema: { body: SendBody } }, async (request, reply) => {
    try {
      return await send(request.body);
    } catch (err) {
      if (err instanceof SimSpecError) return reply.status(400).send({ error: 'bad message', message: err.message });
      throw err;
    }
  });

  app.get<{ Querystring: { user?: string; replay?: '0' | '1' } }>('/sim/events', { schema: { querystring: EventsQuery } }, (request, reply) => {
    const users = usersOf(request.query.user);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 1000\n\n');
    if (request.query.replay === '1') for (const event of hub.history(users)) res.write(sseMessage(event));
    const unsubscribe = hub.subscribe(users, (event) => res.write(sseMessage(event)));
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
    heartbeat.unref();
    request.raw.on('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
    });
  });
  done();
};

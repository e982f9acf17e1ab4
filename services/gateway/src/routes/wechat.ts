import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { WxError, verifySignature } from '@wxrelay/shared/protocol';
import { toInboundJob, type Placement } from '@wxrelay/shared/queue';
import { isTimestampFresh, openCallback, type CallbackQuery, type CallbackSecrets } from '../callback.js';
import type { GatewayMetrics } from '../metrics.js';
import { answerHeld, type PassiveAnswerDeps } from '../passive-answer.js';
import { logCallbackMessage } from '../plugins/callback-debug-log.js';

const Param = Type.String({ minLength: 1, maxLength: 128 });

const VerifyQuery = Type.Object({
  signature: Param,
  timestamp: Param,
  nonce: Param,
  echostr: Type.String({ minLength: 1, maxLength: 512 }),
});

const CallbackQuerySchema = Type.Object({
  signature: Param,
  timestamp: Param,
  nonce: Param,
  openid: Type.Optional(Type.String({ maxLength: 128 })),
  encrypt_type: Type.Optional(Type.String({ maxLength: 16 })),
  msg_signature: Type.Optional(Type.String({ maxLength: 128 })),
});

export interface WechatRoutesOptions {
  readonly path: string;
  readonly secrets: CallbackSecrets;
  readonly timestampToleranceSeconds: number;
  readonly metrics: GatewayMetrics;
  readonly now: () => number;
}

const SUCCESS = 'success';

/**
 * The WeChat callback URL: `GET` for URL verification, `POST` for every message and event.
 *
 * @see https://developers.weixin.qq.com/doc/service/guide/dev/push/
 */
export function wechatRoutes(app: FastifyInstance, opts: WechatRoutesOptions): void {
  const { secrets, metrics, now } = opts;
  const desk = app.answers;
  const passive: PassiveAnswerDeps | undefined =
    desk === undefined ? undefined : { desk, metrics, now, token: secrets.token, appId: secrets.appId, aesKey: secrets.aesKeys[0] };

  app.get<{ Querystring: Static<typeof VerifyQuery> }>(
    opts.path,
    { schema: { querystring: VerifyQuery } },
    async (req, reply) => {
      const q = req.query;
      if (!verifySignature(secrets.token, q.timestamp, q.nonce, q.signature)) {
        metrics.callbacks.inc({ mode: 'verify', outcome: 'refused' });
        throw new WxError('WX_ERR_SIGNATURE', 'signature does not match');
      }
      metrics.callbacks.inc({ mode: 'verify', outcome: 'verified' });
      req.log.info('url verification answered');
      return reply.type('text/plain; charset=utf-8').send(q.echostr);
    },
  );

  app.post<{ Querystring: Static<typeof CallbackQuerySchema>; Body: string | undefined }>(
    opts.path,
    { schema: { querystring: CallbackQuerySchema } },
    async (req, reply) => {
      const query: CallbackQuery = req.query;
      const receivedAt = now();
      const endAck = metrics.ackSeconds.startTimer();
      let mode = 'unknown';
      try {
        const opened = openCallback(secrets, query, typeof req.body === 'string' ? req.body : '');
        mode = opened.mode;
        const { message } = opened;
        logCallbackMessage(req.log, opened.mode, message);
        const { jobId, payload } = toInboundJob(message, opened.mode, receivedAt);

        if (!isTimestampFresh(query.timestamp, receivedAt, opts.timestampToleranceSeconds)) {
          // A stale timestamp is a replay unless it is WeChat retrying a message we already hold.
          if (await req.server.isQueued(jobId, message.fromUserName)) {
            metrics.dedupHits.inc();
            metrics.callbacks.inc({ mode, outcome: 'duplicate' });
            endAck({ outcome: 'duplicate' });
            return await reply.type('text/plain; charset=utf-8').send(SUCCESS);
          }
          throw new WxError('WX_ERR_TIMESTAMP', `timestamp outside ±${opts.timestampToleranceSeconds}s`);
        }

        const endEnqueue = metrics.enqueueSeconds.startTimer();
        // Passive and auto modes: waiting for the answer starts before the enqueue, so an answer
        // recorded from then on (a fast worker) is never missed.
        const waiter = desk?.wait(jobId);
        // Enqueued even when seen before: the add is idempotent, and the first try may have failed.
        // Redis says whether it already held the message, whichever gateway instance took it first.
        // Routed by the sender's openid (QUEUE_SHARDS): a user's messages and WeChat's retries of
        // them meet on one queue, whose answer store holds the passive answer.
        let placed: Placement;
        try {
          placed = await req.server.place(jobId, payload);
        } catch (err) {
          waiter?.done();
          throw err;
        }
        const alreadyHeld = placed.held;
        endEnqueue();
        const outcome = alreadyHeld ? 'duplicate' : 'queued';
        if (alreadyHeld) metrics.dedupHits.inc();
        if (message.kind !== 'event' && message.msgId === undefined) {
          // Accepted (refusing makes WeChat retry, then drop it), but worth seeing. No openid here.
          const msgType = message.kind === 'unknown' ? message.msgType : message.kind;
          req.log.warn({ msgType, jobId, outcome }, 'push without MsgId accepted; deduplicated by sender, CreateTime and MsgType');
        }
        metrics.callbacks.inc({ mode, outcome });
        endAck({ outcome });
        if (passive !== undefined && waiter !== undefined) {
          await answerHeld(passive, req, reply, { jobId, message, mode: opened.mode, retry: alreadyHeld, receivedAt, waiter, store: passive.desk.storeFor(placed.queue) });
          return reply;
        }
        return await reply.type('text/plain; charset=utf-8').send(SUCCESS);
      } catch (err) {
        const outcome = err instanceof WxError ? (err.code === 'WX_ERR_ENQUEUE' ? 'unavailable' : 'refused') : 'error';
        metrics.callbacks.inc({ mode, outcome });
        endAck({ outcome });
        throw err;
      }
    },
  );
}

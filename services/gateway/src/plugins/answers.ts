import fp from 'fastify-plugin';
import { Cluster, type Redis } from 'ioredis';
import type { GatewayReplyConfig } from '@wxrelay/shared/config';
import { answerKeys, createAnswerStore, DEFAULT_ANSWER_TTL_MS, type AnswerStore, type QueueShard } from '@wxrelay/shared/queue';

declare module 'fastify' {
  interface FastifyInstance {
    /** Passive answers: the store and the waiting room (only when REPLY_MODE is passive or auto). */
    answers: AnswerDesk | undefined;
  }
}

/** One request waiting for its message's answer. */
export interface Waiter {
  /**
   * Resolves true when an answer for the message may be ready (published, or the subscription came
   * back after a gap), false at `deadline` (Unix ms): whichever comes first. Call again to go on
   * waiting after a wake that found nothing.
   */
  next(deadline: number): Promise<boolean>;
  /** Stops waiting (always call it, once). */
  done(): void;
}

/**
 * Where held requests wait for their answers. One subscription per gateway (one connection) to the
 * answers channel of every queue in use (each shard of QUEUE_SHARDS, and of QUEUE_SHARDS_ALSO while
 * it changes), whatever the number of requests held: a recorded answer's job id arrives on it and wakes the
 * requests holding that message (a local map). A request registers before it enqueues, so an
 * answer published from then on is never missed; a retry (the answer may be older than the
 * request) claims once on arrival. Pub/sub may drop a message while the subscription is down: when
 * it is back, every held request is woken to claim once (no polling in between).
 */
export interface AnswerDesk {
  /** The first queue's store (the only one with one queue). */
  readonly store: AnswerStore;
  /** The store of the queue that holds a message (`app.place`'s answer): where its answer is recorded. */
  storeFor(queue: Pick<QueueShard, 'jobPrefix'>): AnswerStore;
  readonly config: GatewayReplyConfig;
  wait(jobId: string): Waiter;
  /** Requests held right now. */
  readonly held: number;
}

export interface AnswersPluginOptions {
  readonly config: GatewayReplyConfig;
  /** `<prefix>:<queue>:` of every queue in use (`QueueShard.jobPrefix`), the first one first. */
  readonly jobKeyPrefixes: readonly string[];
}

export function createAnswerDesk(redis: Redis | Cluster, subscriber: Redis | Cluster, opts: AnswersPluginOptions): AnswerDesk {
  const times = { answerTtlMs: DEFAULT_ANSWER_TTL_MS, inboxTtlMs: opts.config.inboxTtlMs };
  // The scripts are defined once on the connection; each store binds its queue's keys.
  const stores = new Map(opts.jobKeyPrefixes.map((prefix) => [prefix, createAnswerStore(redis, answerKeys(prefix), times)]));
  const store = stores.get(opts.jobKeyPrefixes[0]!)!;
  const wakers = new Map<string, Set<() => void>>();
  let held = 0;
  const wake = (jobId: string): void => {
    const set = wakers.get(jobId);
    if (set !== undefined) for (const w of [...set]) w();
  };
  subscriber.on('message', (_channel: string, jobId: string) => wake(jobId));
  let subscribedOnce = false;
  subscriber.on('ready', () => {
    // ioredis subscribes again by itself after a reconnect; what was published meanwhile is lost.
    if (subscribedOnce) for (const jobId of [...wakers.keys()]) wake(jobId);
    subscribedOnce = true;
  });
  void subscriber.subscribe(...[...stores.values()].map((s) => s.keys.channel)).catch(() => undefined);

  return {
    store,
    storeFor(queue) {
      const found = stores.get(queue.jobPrefix);
      if (found === undefined) throw new Error(`no answer store for the queue ${queue.jobPrefix}`);
      return found;
    },
    config: opts.config,
    get held() {
      return held;
    },
    wait(jobId) {
      held += 1;
      let pending = false;
      let resolveNext: ((woken: boolean) => void) | undefined;
      let timer: NodeJS.Timeout | undefined;
      const waker = (): void => {
        if (resolveNext === undefined) {
          pending = true;
          return;
        }
        const r = resolveNext;
        resolveNext = undefined;
        clearTimeout(timer);
        r(true);
      };
      let set = wakers.get(jobId);
      if (set === undefined) wakers.set(jobId, (set = new Set()));
      set.add(waker);
      let finished = false;
      return {
        next(deadline) {
          if (pending) {
            pending = false;
            return Promise.resolve(true);
          }
          const ms = deadline - Date.now();
          if (ms <= 0 || finished) return Promise.resolve(false);
          return new Promise<boolean>((resolve) => {
            resolveNext = resolve;
            timer = setTimeout(() => {
              resolveNext = undefined;
              resolve(false);
            }, ms);
          });
        },
        done() {
          if (finished) return;
          finished = true;
          held -= 1;
          clearTimeout(timer);
          const r = resolveNext;
          resolveNext = undefined;
          r?.(false);
          set.delete(waker);
          if (set.size === 0 && wakers.get(jobId) === set) wakers.delete(jobId);
        },
      };
    },
  };
}

/**
 * The answer desk as a fastify decorator (`app.answers`), with its subscriber connection; in
 * `customer-service` mode there is none (`undefined`) and nothing is opened.
 */
export const answersPlugin = fp<AnswersPluginOptions>(
  (app, opts, done) => {
    if (opts.config.mode === 'customer-service') {
      app.decorate('answers', undefined);
      done();
      return;
    }
    // Subscribed connections cannot run other commands; this one only listens. It queues its
    // SUBSCRIBE until connected (unlike the fail-fast command connection) and reconnects forever.
    // In a Cluster, PUBLISH reaches every node: a subscription on any one of them hears it.
    const subscriber =
      app.redis instanceof Cluster
        ? app.redis.duplicate(undefined, { enableOfflineQueue: true, redisOptions: { ...app.redis.options.redisOptions, maxRetriesPerRequest: null } })
        : app.redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null });
    let wasDown = false;
    subscriber.on('error', (err: Error) => {
      if (!wasDown) app.log.error({ err }, 'answers subscription error: held requests get their answers on the next attempt');
      wasDown = true;
    });
    subscriber.on('ready', () => {
      if (wasDown) app.log.info('answers subscription restored');
      wasDown = false;
    });
    const desk = createAnswerDesk(app.redis, subscriber, opts);
    app.decorate('answers', desk);
    app.addHook('onClose', (_instance, next) => {
      subscriber.disconnect();
      next();
    });
    done();
  },
  { name: 'wxrelay-answers', dependencies: ['wxrelay-redis'], fastify: '5.x' },
);

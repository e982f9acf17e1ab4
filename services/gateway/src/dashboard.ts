import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { basicMatches, bearerMatches, type PrivateRoutes } from '@wxrelay/shared';
import type { Logger } from '@wxrelay/shared/logging';
import type { QueueShard } from '@wxrelay/shared/queue';

/** Where the queue dashboard lives on the private (metrics) listener. */
export const DASHBOARD_PATH = '/admin/queues';
/** The basic-auth user name a browser logs in with; the password is ADMIN_TOKEN. */
export const DASHBOARD_USER = 'admin';

export interface DashboardOptions {
  /**
   * The inbound queue (`app.inboundQueue`), or every queue in use (`app.inboundQueues`: each shard of
   * QUEUE_SHARDS, shown under its name).
   */
  readonly queue: Queue | readonly NamedQueue[];
  /** ADMIN_TOKEN: `Authorization: Bearer <token>`, or basic auth `admin:<token>`. */
  readonly token: string;
  /** ADMIN_ACTIONS: retry, promote, clean, pause… allowed; otherwise read-only. */
  readonly actions: boolean;
  /** Told, in one line, when the dashboard could not be registered. */
  readonly log: Logger;
}

type NamedQueue = { readonly queue: Queue; readonly shard: Pick<QueueShard, 'name' | 'queueName'> };

function namedQueues(given: DashboardOptions['queue']): readonly NamedQueue[] {
  if ('length' in given) return given;
  const queue = given;
  return [{ queue, shard: { name: queue.name, queueName: queue.name } }];
}

/**
 * Bull Board for the inbound queue (every shard: each under its name, `{wx-0of3-4}:wx-inbound`), as routes of the gateway's private listener (never the public
 * one). Every request under {@link DASHBOARD_PATH} needs the admin token; a browser gets a basic
 * auth challenge. Read-only unless `actions`: Bull Board then refuses every action with 405, in its
 * API and not only in its UI. Optional: if Bull Board cannot be registered, the listener serves
 * /metrics without it and the failure is logged once.
 */
export function dashboardRoutes(opts: DashboardOptions): PrivateRoutes & { readonly failed: () => boolean } {
  let failed = false;
  return {
    name: 'queue dashboard',
    failed: () => failed,
    optional: {
      onFailure: (err) => {
        failed = true;
        opts.log.warn({ err }, `queue dashboard off: Bull Board could not be registered (${err instanceof Error ? err.message : String(err)}); /metrics still serves`);
      },
    },
    register: async (app: FastifyInstance) => {
      // Auth first, for everything under the path (UI, static files, API), before Bull Board sees it.
      app.addHook('onRequest', async (req, reply) => {
        const auth = req.headers.authorization;
        if (bearerMatches(auth, opts.token) || basicMatches(auth, DASHBOARD_USER, opts.token)) return;
        await reply
          .code(401)
          .header('www-authenticate', 'Basic realm="wxrelay admin", charset="UTF-8"')
          .type('text/plain')
          .send('unauthorized');
      });
      const serverAdapter = new FastifyAdapter();
      serverAdapter.setBasePath(DASHBOARD_PATH);
      createBullBoard({
        // Bull Board names a queue `<adapter prefix><queue name>`: a shard's prefix tells them apart.
        queues: namedQueues(opts.queue).map(
          ({ queue, shard }) => new BullMQAdapter(queue, { readOnlyMode: !opts.actions, ...(shard.name === shard.queueName ? {} : { prefix: shard.name.slice(0, shard.name.length - shard.queueName.length) }) }),
        ),
        serverAdapter,
        options: { uiConfig: { boardTitle: 'wxrelay queues' } },
      });
      // Bull Board's plugin takes a callback and may throw synchronously (a route it cannot add):
      // fastify's loader does not catch that, and it would become an uncaught exception that ends
      // the gateway. Wrapped, it is a failed registration like any other.
      const bullBoard = serverAdapter.registerPlugin();
      await app.register(
        async (child, pluginOpts) =>
          new Promise<void>((resolve, reject) => {
            try {
              bullBoard(child, pluginOpts, (err?: Error) => (err === undefined ? resolve() : reject(err)));
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)));
            }
          }),
        { prefix: DASHBOARD_PATH },
      );
    },
  };
}

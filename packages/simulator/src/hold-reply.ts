import { setTimeout as delay } from 'node:timers/promises';
import type { FastifyReply } from 'fastify';

/**
 * Holds a reply for `ms` on a timer (other requests go on meanwhile). When `signal` aborts first —
 * the server is closing — the connection is dropped instead of answered, as a dying server would,
 * and false is returned: the caller must not send.
 */
export async function holdReply(reply: FastifyReply, ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await delay(ms, undefined, { signal });
    return true;
  } catch {
    reply.hijack();
    reply.raw.destroy();
    return false;
  }
}

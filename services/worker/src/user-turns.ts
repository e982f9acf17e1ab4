import type { RedisClient } from '@wxrelay/shared/redis';
import { createTurnsScripts, turnKeys } from '@wxrelay/shared/queue';

/**
 * Per-user reply order across any number of worker processes: a job may reply only while it is
 * the head of its user's turn list; the job holding the turn may answer the jobs behind it
 * (a backlog) and mark them answered.
 *
 * How the lists are kept beside BullMQ's queue (the event stream, job hashes, wait and active
 * lists, read in one Lua script), and the startup check that BullMQ still stores them as expected,
 * live in the door to BullMQ: `@wxrelay/shared/queue` (packages/shared/src/queue/turns.ts).
 */

export interface UserTurns {
  /** Registers `jobId` and says whether it is its turn now (`enter` without the followers). */
  take(openid: string, jobId: string, enqueuedAt: number): Promise<boolean>;
  /**
   * Registers `jobId` and, when it is its turn, says whether an earlier job already answered it
   * (see {@link UserTurns.markAnswered}) or else which jobs of the user wait behind it (up to
   * `followers`, with their payloads), in one round trip.
   */
  enter(openid: string, jobId: string, enqueuedAt: number, followers?: number): Promise<Turn>;
  /** The job is done (or given up, or needs no turn): the next one of the user may go. Returns the new head. */
  release(openid: string, jobId: string): Promise<string | undefined>;
  /**
   * `byJobId` answers `jobIds` together with its own message: each of them, once it holds its
   * turn, finds the marker and completes without sending. Idempotent; markers expire with the
   * turn lists.
   */
  markAnswered(byJobId: string, jobIds: readonly string[]): Promise<void>;
  /** Takes back the markers `byJobId` set (only its own): those jobs answer themselves. */
  clearAnswered(byJobId: string, jobIds: readonly string[]): Promise<void>;
}

/** A job of the user registered after the one holding the turn, not finished. */
export interface Follower {
  readonly jobId: string;
  /** Its payload as stored on the job (JSON-decoded; unchecked). */
  readonly data: unknown;
}

export type Turn =
  | { readonly kind: 'wait' }
  | { readonly kind: 'turn'; readonly followers: readonly Follower[] }
  /** The job holds its turn and an earlier job already answered its message. */
  | { readonly kind: 'answered'; readonly by: string };

export interface UserTurnsDeps {
  readonly redis: RedisClient;
  readonly appId: string;
  /** BullMQ's job hash key prefix: `worker.toKey('')`, i.e. `<prefix>:<queue>:`. */
  readonly jobKeyPrefix: string;
  /** BullMQ's keys of the queue's event stream, active and wait lists (`worker.toKey('events')`, …). */
  readonly eventsKey: string;
  readonly activeKey: string;
  readonly waitKey: string;
  /** A turn list (and the cursor) outlives its last activity by this long (default 7 days). */
  readonly ttlMs?: number;
}

export function createUserTurns(deps: UserTurnsDeps): UserTurns {
  const keys = turnKeys(deps.appId, deps.jobKeyPrefix);
  // The keys the worker was handed must be the ones the door derives (and checks against BullMQ).
  const given = { events: deps.eventsKey, active: deps.activeKey, wait: deps.waitKey };
  for (const [name, key] of Object.entries(given)) {
    if (key !== keys[name as keyof typeof given]) throw new Error(`user turns: ${name} key ${key} is not BullMQ's ${keys[name as keyof typeof given]}`);
  }
  // Throws (the worker does not start) when the installed bullmq is not one the turns were written for.
  const scripts = createTurnsScripts(deps.redis, keys, deps.ttlMs);
  const { markerPrefix } = keys;
  const ttl = scripts.ttlMs;
  const enter = async (openid: string, jobId: string, enqueuedAt: number, followers = 0): Promise<Turn> => {
    const answer = await scripts.take(openid, jobId, enqueuedAt, followers);
    if (answer[0] === 2) return { kind: 'answered', by: String(answer[1]) };
    if (answer[0] !== 1) return { kind: 'wait' };
    const list: Follower[] = [];
    for (let i = 1; i + 1 < answer.length; i += 2) {
      let data: unknown;
      try {
        data = JSON.parse(String(answer[i + 1]));
      } catch {
        data = undefined;
      }
      list.push({ jobId: String(answer[i]), data });
    }
    return { kind: 'turn', followers: list };
  };
  return {
    enter,
    async take(openid, jobId, enqueuedAt) {
      return (await enter(openid, jobId, enqueuedAt)).kind !== 'wait';
    },
    async release(openid, jobId) {
      const head = await scripts.release(openid, jobId);
      return typeof head === 'string' ? head : undefined;
    },
    async markAnswered(byJobId, jobIds) {
      if (jobIds.length === 0) return;
      const multi = deps.redis.multi();
      for (const id of jobIds) multi.set(markerPrefix + id, byJobId, 'PX', ttl);
      await multi.exec();
    },
    async clearAnswered(byJobId, jobIds) {
      if (jobIds.length === 0) return;
      await scripts.unmark(byJobId, jobIds);
    },
  };
}

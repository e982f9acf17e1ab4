/**
 * A cheap HTTP/1.1 load generator on raw sockets: keep-alive connections, one request in flight per
 * connection, requests given as ready-made text. Answers count as good only when they are
 * `200` with the body `success`; a caller that expects other answers (passive replies) reads each
 * one through `onResponse`.
 *
 * Two drivers: {@link runOpenLoop} sends on a fixed schedule whatever the server does and measures
 * each latency from the *scheduled* send time (no coordinated omission: a request that waits for a
 * free connection is charged for the wait), and {@link runClosedLoop} keeps every connection busy
 * (bursts).
 */
import { connect, type Socket } from 'node:net';
import { nowMs } from '../stats.ts';

const HEADER_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:\s*(\d+)/i;

/** An answer as it came: its head (status line and headers, latin1) and its body (UTF-8). */
export interface RawResponse {
  readonly head: string;
  readonly body: string;
}

/** `response` is undefined when the connection closed or the answer had no Content-Length. */
type Done = (ok: boolean, at: number, response: RawResponse | undefined) => void;

interface Connection {
  socket: Socket;
  pending: Buffer | undefined;
  done: Done | undefined;
}

/** A pool of keep-alive connections to 127.0.0.1:port. */
export interface LoadClient {
  /** Sends on an idle connection; false (and nothing sent) when none is idle. */
  trySend(request: string, done: Done): boolean;
  /** Called with a connection that just became idle. */
  onIdle: (() => void) | undefined;
  close(): void;
}

/** Opens `connections` keep-alive sockets, all connected before it resolves. */
export async function openLoadClient(port: number, connections: number): Promise<LoadClient> {
  const idle: Connection[] = [];
  const all = new Set<Connection>();
  let closing = false;
  const client: LoadClient = {
    onIdle: undefined,
    trySend(request, done) {
      const conn = idle.pop();
      if (conn === undefined) return false;
      conn.done = done;
      conn.socket.write(request);
      return true;
    },
    close() {
      closing = true;
      for (const c of all) c.socket.destroy();
    },
  };

  const finish = (conn: Connection, ok: boolean, response?: RawResponse): void => {
    const done = conn.done;
    conn.done = undefined;
    conn.pending = undefined;
    const at = nowMs();
    idle.push(conn);
    done?.(ok, at, response);
    client.onIdle?.();
  };

  const onData = (conn: Connection, chunk: Buffer): void => {
    const buf = conn.pending === undefined ? chunk : Buffer.concat([conn.pending, chunk]);
    const headerEnd = buf.indexOf(HEADER_END);
    if (headerEnd === -1) {
      conn.pending = buf;
      return;
    }
    const head = buf.toString('latin1', 0, headerEnd);
    const length = CONTENT_LENGTH.exec(head);
    if (length === null) {
      finish(conn, false);
      return;
    }
    const bodyStart = headerEnd + 4;
    const bodyEnd = bodyStart + Number(length[1]);
    if (buf.length < bodyEnd) {
      conn.pending = buf;
      return;
    }
    const body = buf.toString('utf8', bodyStart, bodyEnd);
    finish(conn, head.startsWith('HTTP/1.1 200') && body === 'success', { head, body });
  };

  const open = (): Promise<Connection> =>
    new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      const conn: Connection = { socket, pending: undefined, done: undefined };
      socket.once('connect', () => {
        all.add(conn);
        resolve(conn);
      });
      socket.on('data', (chunk: Buffer) => onData(conn, chunk));
      socket.on('error', reject);
      socket.on('close', () => {
        all.delete(conn);
        const at = idle.indexOf(conn);
        if (at !== -1) idle.splice(at, 1);
        const done = conn.done;
        conn.done = undefined;
        done?.(false, nowMs(), undefined);
        if (!closing) {
          // Replace a connection the server closed, so the pool keeps its size.
          open().then(
            (fresh) => {
              idle.push(fresh);
              client.onIdle?.();
            },
            () => undefined,
          );
        }
      });
    });

  // Connect in slices: a thousand simultaneous SYNs can overflow a default listen backlog.
  for (let i = 0; i < connections; i += 100) {
    const batch = await Promise.all(Array.from({ length: Math.min(100, connections - i) }, open));
    idle.push(...batch);
  }
  return client;
}

export interface OpenLoopOptions {
  readonly port: number;
  readonly connections: number;
  /** Requests per second. */
  readonly rate: number;
  /** Total requests to schedule. */
  readonly count: number;
  /** Request text for the i-th send. */
  readonly makeRequest: (i: number) => string;
  /** Give up waiting for answers this long after the last scheduled send. */
  readonly drainTimeoutMs?: number;
  /** Each answer of request i as it arrives (undefined: none, the connection closed). */
  readonly onResponse?: (i: number, response: RawResponse | undefined) => void;
}

export interface OpenLoopResult {
  /** Scheduled send instants (ms, {@link nowMs} clock). */
  readonly scheduledAt: Float64Array;
  /** When the generator got round to each request (its own timer lateness; NaN if never). */
  readonly dueAt: Float64Array;
  /** When each request really went out, after waiting for a free connection (NaN if never). */
  readonly sentAt: Float64Array;
  /** When each answer arrived (NaN if none). */
  readonly ackAt: Float64Array;
  readonly ok: Uint8Array;
  readonly errors: number;
}

/**
 * Sends `count` requests at `rate` per second on a fixed schedule, whatever the answers do. A
 * request whose turn comes while every connection is busy waits for one; its latency still runs
 * from its scheduled time.
 */
export async function runOpenLoop(opts: OpenLoopOptions): Promise<OpenLoopResult> {
  const client = await openLoadClient(opts.port, opts.connections);
  const n = opts.count;
  const scheduledAt = new Float64Array(n);
  const dueAt = new Float64Array(n).fill(Number.NaN);
  const sentAt = new Float64Array(n).fill(Number.NaN);
  const ackAt = new Float64Array(n).fill(Number.NaN);
  const ok = new Uint8Array(n);
  const interval = 1000 / opts.rate;
  const start = nowMs() + 20;
  for (let i = 0; i < n; i++) scheduledAt[i] = start + i * interval;

  let answered = 0;
  let resolveAll: () => void = () => undefined;
  const allAnswered = new Promise<void>((r) => (resolveAll = r));
  const backlog: number[] = [];
  let backlogHead = 0;

  const dispatch = (i: number): boolean => {
    const request = opts.makeRequest(i);
    const sent = client.trySend(request, (good, at, response) => {
      ackAt[i] = at;
      ok[i] = good ? 1 : 0;
      opts.onResponse?.(i, response);
      answered += 1;
      if (answered === n) resolveAll();
    });
    if (sent) sentAt[i] = nowMs();
    return sent;
  };
  client.onIdle = () => {
    while (backlogHead < backlog.length) {
      if (!dispatch(backlog[backlogHead]!)) return;
      backlogHead += 1;
    }
  };

  let next = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = nowMs();
      while (next < n && scheduledAt[next]! <= now) {
        dueAt[next] = now;
        if (backlogHead < backlog.length || !dispatch(next)) backlog.push(next);
        next += 1;
      }
      if (next >= n) return resolve();
      setTimeout(tick, Math.max(0, scheduledAt[next]! - nowMs()));
    };
    setTimeout(tick, Math.max(0, start - nowMs()));
  });
  const timeout = new Promise<void>((r) => setTimeout(r, opts.drainTimeoutMs ?? 30_000).unref());
  await Promise.race([allAnswered, timeout]);
  client.close();
  let errors = 0;
  for (let i = 0; i < n; i++) if (ok[i] !== 1) errors += 1;
  return { scheduledAt, dueAt, sentAt, ackAt, ok, errors };
}

export interface ClosedLoopOptions {
  readonly port: number;
  readonly connections: number;
  readonly count: number;
  readonly makeRequest: (i: number) => string;
  readonly timeoutMs?: number;
  /** Each answer of request i as it arrives (undefined: none, the connection closed). */
  readonly onResponse?: (i: number, response: RawResponse | undefined) => void;
}

export interface ClosedLoopResult {
  /** The instant before the first request was written. */
  readonly startedAt: number;
  readonly sentAt: Float64Array;
  readonly ackAt: Float64Array;
  readonly errors: number;
}

/**
 * Sends `count` requests as fast as the server answers: every connection gets a request at once
 * (with `connections >= count`, every request leaves in one synchronous loop: users writing at
 * the same moment), and sends its next one as soon as an answer comes back.
 */
export async function runClosedLoop(opts: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const client = await openLoadClient(opts.port, opts.connections);
  const n = opts.count;
  const requests = Array.from({ length: n }, (_, i) => opts.makeRequest(i));
  const sentAt = new Float64Array(n).fill(Number.NaN);
  const ackAt = new Float64Array(n).fill(Number.NaN);
  const ok = new Uint8Array(n);
  let next = 0;
  let answered = 0;
  let resolveAll: () => void = () => undefined;
  const allAnswered = new Promise<void>((r) => (resolveAll = r));

  const sendNext = (): boolean => {
    if (next >= n) return false;
    const i = next;
    const sent = client.trySend(requests[i]!, (good, at, response) => {
      ackAt[i] = at;
      ok[i] = good ? 1 : 0;
      opts.onResponse?.(i, response);
      answered += 1;
      if (answered === n) resolveAll();
    });
    if (!sent) return false;
    sentAt[i] = nowMs();
    next += 1;
    return true;
  };
  client.onIdle = () => {
    sendNext();
  };
  const startedAt = nowMs();
  while (sendNext());
  const timeout = new Promise<void>((r) => setTimeout(r, opts.timeoutMs ?? 120_000).unref());
  await Promise.race([allAnswered, timeout]);
  client.close();
  let errors = 0;
  for (let i = 0; i < n; i++) if (ok[i] !== 1) errors += 1;
  return { startedAt, sentAt, ackAt, errors };
}

import type { SimEvent } from './sim-events.js';

export interface SimEventStreamOptions {
  /** The simulator's base URL. */
  readonly simUrl: string;
  /** Only these users' events; every user when omitted. */
  readonly users?: readonly string[];
  /** First replay the recent history. */
  readonly replay?: boolean;
  readonly onEvent: (event: SimEvent) => void;
  /** Ends the stream. */
  readonly signal: AbortSignal;
  readonly fetch?: typeof fetch;
}

export interface SimEventStream {
  /** Resolves once the simulator has accepted the subscription (events after this are seen). */
  readonly ready: Promise<void>;
  /** Settles when the stream ends: resolves on abort, rejects when the connection fails. */
  readonly done: Promise<void>;
}

/**
 * Reads `GET /sim/events` (Server-Sent Events) from Node, where `EventSource` is not a global:
 * one `data:` line per event, each a JSON {@link SimEvent}.
 */
export function streamSimEvents(options: SimEventStreamOptions): SimEventStream {
  const url = new URL('/sim/events', options.simUrl);
  if (options.users !== undefined) url.searchParams.set('user', options.users.join(','));
  if (options.replay === true) url.searchParams.set('replay', '1');
  let markReady: () => void = () => undefined;
  let failReady: (err: unknown) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    failReady = reject;
  });
  const done = (async () => {
    const response = await (options.fetch ?? fetch)(url, { signal: options.signal, headers: { accept: 'text/event-stream' } });
    if (!response.ok || response.body === null) throw new Error(`event stream answered HTTP ${response.status}`);
    markReady();
    let buffer = '';
    let data: string[] = [];
    for await (const chunk of response.body.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let newline = buffer.indexOf('\n');
      while (newline !== -1) {
        const line = buffer.slice(0, newline).replace(/\r$/, '');
        buffer = buffer.slice(newline + 1);
        if (line === '') {
          if (data.length > 0) options.onEvent(JSON.parse(data.join('\n')) as SimEvent);
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
        }
        newline = buffer.indexOf('\n');
      }
    }
  })().catch((err: unknown) => {
    failReady(err);
    if (options.signal.aborted) return;
    throw err;
  });
  // Callers that only await `ready` must not leave `done`'s rejection unhandled.
  done.catch(() => undefined);
  ready.catch(() => undefined);
  return { ready, done };
}

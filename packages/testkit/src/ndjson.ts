import { Writable } from 'node:stream';

/** What a logger wrote to a {@link captureNdjson} destination. */
export interface CapturedNdjson {
  /** Give this to the logger (e.g. `createLogger({ destination })`). */
  readonly destination: Writable;
  /** Everything written, as written. */
  readonly text: () => string;
  /** Every line, parsed (logs are tested as data). */
  readonly lines: () => Record<string, unknown>[];
}

/** A stream that keeps the NDJSON lines written to it, so a test can read a logger's output back. */
export function captureNdjson(): CapturedNdjson {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const text = () => chunks.join('');
  return {
    destination,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

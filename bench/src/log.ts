const started = Date.now();

/** Progress on stderr, with the seconds since the bench started. */
export function log(message: string): void {
  process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
}

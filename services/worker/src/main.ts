import { createLogger, isWxError, loadWorkerConfig, openMetricsListener, type MetricsServer, type WorkerConfig } from '@wxrelay/shared';
import { healthRoutes } from './health.js';
import { withTimeout } from './timeout.js';
import { buildWorker } from './worker.js';

function readConfig(): WorkerConfig {
  try {
    return loadWorkerConfig(process.env);
  } catch (err) {
    if (isWxError(err, 'WX_ERR_CONFIG')) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

const config = readConfig();
const log = createLogger({ name: 'worker', level: config.logLevel, pretty: process.stdout.isTTY });
const worker = await buildWorker(config, { log });

// The private listener (/metrics, /healthz) before any job is taken: a port already taken (a second
// worker on this host gets the same default) turns it off for this process with one warning, never
// the process itself. /healthz answers 503 until start() below.
let metricsServer: MetricsServer | undefined;
if (config.metrics.port !== 0) {
  const listener = await openMetricsListener({
    port: config.metrics.port,
    host: config.metrics.host,
    render: () => worker.metrics.registry.metrics(),
    contentType: worker.metrics.registry.contentType,
    ...(config.metrics.token === undefined ? {} : { token: config.metrics.token }),
    routes: [healthRoutes(() => worker.health())],
  });
  if (listener.state === 'on') metricsServer = listener.server;
  else log.warn({ port: config.metrics.port, code: listener.code }, listener.warning);
}

worker.start();
log.info({ concurrency: config.concurrency, llm: config.llm !== undefined, rules: worker.rules, metrics: metricsServer?.url ?? 'off' }, 'worker started');

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'shutting down: no new jobs, finishing the in-flight ones');
  // Bounded as a whole: with Redis unreachable, closing would otherwise wait forever.
  await withTimeout(
    (async () => {
      await worker.close(config.shutdownTimeoutMs);
      await metricsServer?.close();
    })(),
    config.shutdownTimeoutMs + 5_000,
    () => {
      log.error('shutdown did not finish in time; exiting');
      process.exit(1);
    },
    { unref: true },
  );
  log.info('worker stopped');
  process.exit(0);
}
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    shutdown(signal).catch((err: unknown) => {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  });
}

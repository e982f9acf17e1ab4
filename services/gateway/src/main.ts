import { checkRedisDurabilityWhenReady, createLogger, loadGatewayConfig, openMetricsListener, type MetricsServer } from '@wxrelay/shared';
import { buildApp } from './app.js';
import { DASHBOARD_PATH, DASHBOARD_USER, dashboardRoutes } from './dashboard.js';

/** How long SIGTERM may take before the process gives up waiting and exits. */
const SHUTDOWN_BUDGET_MS = 9_000;

async function main(): Promise<void> {
  const config = loadGatewayConfig(process.env);
  const log = createLogger({ name: 'gateway', level: config.logLevel, pretty: process.stdout.isTTY });
  const app = await buildApp(config, { logger: log });
  await app.ready();
  // Warns (never fails) when Redis would lose acked messages: no persistence, or eviction. Runs once
  // Redis is up, whenever that is.
  void checkRedisDurabilityWhenReady(app.redis, log);

  // The private listener (metrics, and the queue dashboard when ADMIN_TOKEN is set) is optional: a
  // port already taken turns it off for this process with one warning, and a dashboard that cannot
  // be registered leaves /metrics serving.
  let metricsServer: MetricsServer | undefined;
  if (config.metrics.port !== 0) {
    const registry = app.metrics.registry;
    const { token: adminToken, actions } = config.dashboard;
    const dashboard = adminToken === undefined ? undefined : dashboardRoutes({ queue: app.inboundQueues, token: adminToken, actions, log });
    const listener = await openMetricsListener({
      host: config.metrics.host,
      port: config.metrics.port,
      ...(config.metrics.token === undefined ? {} : { token: config.metrics.token }),
      render: () => registry.metrics(),
      contentType: registry.contentType,
      routes: dashboard === undefined ? [] : [dashboard],
    });
    if (listener.state === 'on') {
      metricsServer = listener.server;
      log.info({ url: metricsServer.url }, 'metrics listening');
      if (dashboard === undefined) log.info('queue dashboard off: set ADMIN_TOKEN to serve it on the metrics listener');
      else if (!dashboard.failed()) log.info({ url: `${metricsServer.origin}${DASHBOARD_PATH}`, user: DASHBOARD_USER, actions }, `queue dashboard listening (${actions ? 'actions allowed' : 'read-only'})`);
    } else {
      log.warn({ port: config.metrics.port, code: listener.code }, listener.warning);
    }
  }

  const address = await app.listen({ port: config.port, host: config.host });
  log.info({ address, encryption: config.wechat.encodingAesKeys.length > 0 }, 'gateway listening');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: no new connections, finishing requests in flight');
    const force = setTimeout(() => {
      log.error('shutdown budget exceeded; exiting');
      process.exit(1);
    }, SHUTDOWN_BUDGET_MS);
    force.unref();
    // app.close(): stop listening, let in-flight requests (and their enqueue) finish, then the
    // plugins' onClose hooks close the queue and quit Redis. A keep-alive connection whose request
    // finishes after close began would otherwise hold the server open until its idle timeout.
    const sweeper = setInterval(() => app.server.closeIdleConnections(), 50);
    sweeper.unref();
    Promise.all([app.close(), metricsServer?.close()])
      .then(() => {
        log.info('stopped');
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  // Configuration errors list every problem; print them plainly for the operator.
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildIfStale, freePort, spawnService, startRedis, type SpawnedService, type TestRedis } from '@wxrelay/testkit';

/**
 * Keeps deploy/ honest: the Grafana dashboard and the Prometheus alert rules may only name metrics
 * that the real services export. A real gateway and a real worker (built dist/, child processes,
 * against a test Redis) are scraped on their private /metrics listeners; every `wxrelay_…` name in
 * the dashboard and in the rules must appear there. prom-client prints `# HELP`/`# TYPE` for every
 * registered metric, even one that has no sample yet (a labelled counter nobody has incremented), so
 * the check reads the `# TYPE` lines: a name is exported when it is registered. Then promtool checks
 * the rules (and their unit tests), and README's tables are checked against both.
 */

const root = resolve(import.meta.dirname, '..');
const read = (p: string): string => readFileSync(resolve(root, p), 'utf8');

const DASHBOARD = 'deploy/grafana/wxrelay.json';
const ALERTS = 'deploy/prometheus/alerts.yml';
const ALERT_TESTS = 'deploy/prometheus/alerts.test.yml';
const PROMETHEUS = 'deploy/prometheus/prometheus.yml';

/** Metric names in a text: `wxrelay_` and what follows (PromQL selectors, legends, descriptions). */
function metricNames(text: string): Set<string> {
  return new Set(text.match(/\bwxrelay_[a-z0-9_]+/g) ?? []);
}

/** `# TYPE name type` lines of a Prometheus text exposition: name → type. */
function exposedTypes(exposition: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1] as string, m[2] as string);
  return types;
}

/** Names that have at least one sample line (not only HELP/TYPE). */
function sampledNames(exposition: string): Set<string> {
  return new Set([...exposition.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )/gm)].map((m) => m[1] as string));
}

/** The registered metric a name used in PromQL refers to (`x_bucket` → `x` for a histogram), or undefined. */
function resolveName(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return name;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (m?.[1] !== undefined && ['histogram', 'summary'].includes(types.get(m[1]) ?? '')) return m[1];
  return undefined;
}

/** GitHub's heading anchors of a markdown text (lower case, punctuation dropped, spaces to dashes, -1… for repeats). */
function headingAnchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const m of markdown.replace(/^```[\s\S]*?^```/gm, '').matchAll(/^#{1,6} +(.+?) *#* *$/gm)) {
    const base = (m[1] as string)
      .replace(/`/g, '')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\- _]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** The README text of `## title` up to the next `## ` heading. */
function section(markdown: string, title: string): string {
  const start = markdown.indexOf(`\n${title}\n`);
  if (start === -1) return '';
  const next = markdown.indexOf('\n## ', start + title.length + 2);
  return markdown.slice(start, next === -1 ? undefined : next);
}

interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; refId?: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
  gridPos?: { h: number; w: number; x: number; y: number };
  fieldConfig?: { defaults?: { thresholds?: { steps?: { value: number | null }[] }; custom?: { thresholdsStyle?: { mode?: string } } } };
}
interface Dashboard {
  schemaVersion: number;
  title: string;
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown; definition?: string }[] };
}
interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const dashboardText = read(DASHBOARD);
const dashboard = JSON.parse(dashboardText) as Dashboard;
const rules = (parse(read(ALERTS)) as { groups: { name: string; rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert !== undefined);
const allPanels = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
/** Panels that query Prometheus (rows and text notes do not). */
const queryPanels = allPanels(dashboard.panels).filter((p) => p.type !== 'row' && p.type !== 'text');

/** Every metric name used, and where: the dashboard's JSON as a whole (queries, template variables, text) and the rules (comments aside). */
const used = new Map<string, string[]>();
for (const [where, text] of [
  [DASHBOARD, dashboardText],
  [ALERTS, JSON.stringify(rules)],
] as const) {
  for (const name of metricNames(text)) used.set(name, [...(used.get(name) ?? []), where]);
}

describe('deploy/grafana/wxrelay.json', () => {
  it('is a dashboard Grafana imports: schemaVersion, title, uid, panels', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.title).toBe('wxrelay');
    expect(dashboard.uid).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
    const ids = allPanels(dashboard.panels).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of allPanels(dashboard.panels)) {
      expect(p.gridPos, p.title).toBeDefined();
      expect((p.gridPos?.x ?? 0) + (p.gridPos?.w ?? 0), p.title).toBeLessThanOrEqual(24);
    }
  });

  it('has a datasource variable and job/instance variables, and every query panel uses them', () => {
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(vars.get('job')?.type).toBe('query');
    expect(vars.get('instance')?.type).toBe('query');
    expect(queryPanels.length).toBeGreaterThanOrEqual(10);
    for (const p of queryPanels) {
      expect(p.datasource?.uid, p.title).toBe('${datasource}');
      expect(p.targets?.length ?? 0, `${p.title}: targets`).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        expect(t.expr, `${p.title}: expr`).toMatch(/\S/);
        expect(t.datasource?.uid, `${p.title}: target datasource`).toBe('${datasource}');
        if (t.expr?.includes('wxrelay_')) expect(t.expr, `${p.title}: filters on $job and $instance`).toMatch(/job=~"\$job",instance=~"\$instance"/);
      }
    }
  });

  it('shows ack latency against the 5 s budget (lines at 4 s and 5 s) and the panels operations asked for', () => {
    const titles = queryPanels.map((p) => p.title ?? '');
    const ack = queryPanels.find((p) => /ack latency p50/i.test(p.title ?? ''));
    expect(ack?.targets?.map((t) => t.expr).join('\n')).toMatch(/histogram_quantile\(0\.99, .*wxrelay_gateway_ack_seconds_bucket/);
    const steps = ack?.fieldConfig?.defaults?.thresholds?.steps?.map((s) => s.value);
    expect(steps).toEqual([null, 4, 5]);
    expect(ack?.fieldConfig?.defaults?.custom?.thresholdsStyle?.mode).toMatch(/line/);
    for (const wanted of [/callbacks by outcome/i, /queue depth/i, /queue lag/i, /completed \/ failed/i, /errcode/i, /token refresh/i, /quota refusals/i, /in-doubt/i, /wechat timeouts/i]) {
      expect(titles.some((t) => wanted.test(t)), String(wanted)).toBe(true);
    }
    const rows = dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title);
    expect(rows).toContain('Reply channels');
  });
});

describe('deploy/prometheus/alerts.yml', () => {
  const readme = read('README.md');
  const anchors = headingAnchors(readme);

  it('gives every alert a severity, a summary, a description and a runbook link to a README heading', () => {
    expect(alerts.length).toBeGreaterThanOrEqual(8);
    for (const a of alerts) {
      expect(['critical', 'warning', 'info'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toMatch(/\S/);
      expect(a.annotations?.description, a.alert).toMatch(/\S/);
      const link = /^README\.md#(.+)$/.exec(a.annotations?.runbook ?? '');
      expect(link?.[1], `${a.alert}: runbook`).toBe(a.alert?.toLowerCase());
      expect(anchors.has(link?.[1] ?? ''), `${a.alert}: README has a heading #${link?.[1]}`).toBe(true);
    }
  });

  it('covers what operations asked for', () => {
    const exprs = alerts.map((a) => a.expr).join('\n');
    for (const name of ['wxrelay_gateway_ack_seconds_bucket', 'wxrelay_gateway_callbacks_total', 'wxrelay_gateway_wechat_timeouts_total', 'wxrelay_queue_oldest_waiting_seconds', 'wxrelay_worker_jobs_total', 'wxrelay_worker_token_refresh_failures_total', 'wxrelay_worker_paused', 'wxrelay_worker_in_doubt_sends_total']) {
      expect(exprs).toContain(name);
    }
    // 5xx means the gateway's "unavailable" (503) and "error" (500) outcomes, nothing else.
    expect(exprs).toContain('outcome=~"unavailable|error"');
  });
});

describe('README "Operating it"', () => {
  const operating = section(read('README.md'), '## Operating it');

  it('has the Metrics and Alerts subsections, one runbook entry per alert', () => {
    expect(operating).toMatch(/^### Metrics$/m);
    expect(operating).toMatch(/^### Alerts$/m);
    for (const a of alerts) expect(operating, String(a.alert)).toMatch(new RegExp(`^#### ${a.alert}$`, 'm'));
  });
});

const promtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
const NO_PROMTOOL = 'promtool is not installed (Debian/Ubuntu: apt-get install -y prometheus): the rules are not checked by promtool';
if (!promtool) console.warn(`tests/deploy-metrics.test.ts: ${NO_PROMTOOL}`);

describe.skipIf(!promtool)(promtool ? 'promtool' : `promtool (skipped: ${NO_PROMTOOL})`, () => {
  const run = (...args: string[]) => spawnSync('promtool', args, { cwd: root, encoding: 'utf8' });

  it('check rules deploy/prometheus/alerts.yml', () => {
    const r = run('check', 'rules', ALERTS);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toContain(`SUCCESS: ${rules.length} rules found`);
  });

  it('test rules deploy/prometheus/alerts.test.yml (the unit tests of some alerts)', () => {
    const r = run('test', 'rules', ALERT_TESTS);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('SUCCESS');
  });

  it('check config deploy/prometheus/prometheus.yml (the example scrape config, which loads the rules)', () => {
    const r = run('check', 'config', PROMETHEUS);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});

describe('the real services export every metric deploy/ uses', () => {
  const TOKEN = 'deploy-metrics-test-token';
  let redis: TestRedis;
  let gateway: SpawnedService | undefined;
  let worker: SpawnedService | undefined;
  const scraped = { gateway: '', worker: '' };
  const metricsUrl = { gateway: '', worker: '' };

  beforeAll(async () => {
    buildIfStale(['services/gateway', 'services/worker']);
    redis = await startRedis();
    const prefix = redis.uniquePrefix('deploy-metrics');
    const [port, gatewayMetrics, workerMetrics] = [await freePort(), await freePort(), await freePort()];
    const common = { REDIS_URL: redis.url, QUEUE_PREFIX: prefix, WECHAT_APP_ID: 'wxdeploymetrics1', METRICS_HOST: '127.0.0.1', METRICS_TOKEN: TOKEN, LOG_LEVEL: 'info' };
    gateway = spawnService('services/gateway/dist/main.js', { ...common, WECHAT_TOKEN: 'deploytoken', PORT: String(port), HOST: '127.0.0.1', METRICS_PORT: String(gatewayMetrics) });
    // No job reaches this worker, so it never calls the WeChat API (an address nothing answers on).
    worker = spawnService('services/worker/dist/main.js', { ...common, WECHAT_APP_SECRET: 'deploy-secret', WECHAT_API_BASE_URL: 'http://127.0.0.1:9', METRICS_PORT: String(workerMetrics) });
    await Promise.all([gateway.waitForLine(/gateway listening/, 30_000), worker.waitForLine(/worker started/, 30_000)]);
    metricsUrl.gateway = `http://127.0.0.1:${gatewayMetrics}/metrics`;
    metricsUrl.worker = `http://127.0.0.1:${workerMetrics}/metrics`;
    for (const service of ['gateway', 'worker'] as const) {
      const res = await fetch(metricsUrl[service], { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(res.status, `${service} /metrics`).toBe(200);
      scraped[service] = await res.text();
    }
  }, 180_000);

  afterAll(async () => {
    await Promise.all([gateway?.stop(), worker?.stop()]);
    await redis?.close();
  });

  it('serve /metrics only with the bearer token (as deploy/prometheus/prometheus.yml sends it)', async () => {
    for (const service of ['gateway', 'worker'] as const) {
      expect((await fetch(metricsUrl[service])).status, service).toBe(401);
      expect((await fetch(metricsUrl[service], { headers: { authorization: 'Bearer wrong' } })).status, service).toBe(401);
    }
    expect(scraped.gateway).toMatch(/^# TYPE wxrelay_gateway_callbacks_total counter$/m);
    expect(scraped.worker).toMatch(/^# TYPE wxrelay_worker_jobs_total counter$/m);
  });

  it('every wxrelay_ name in the dashboard and the alert rules is registered by the gateway or the worker', () => {
    const types = new Map([...exposedTypes(scraped.gateway), ...exposedTypes(scraped.worker)]);
    const sampled = new Set([...sampledNames(scraped.gateway), ...sampledNames(scraped.worker)]);
    expect(used.size).toBeGreaterThan(10);
    const missing = [...used].filter(([name]) => resolveName(name, types) === undefined).map(([name, where]) => `${name} (used in ${where.join(', ')})`);
    // Informational: registered but without a sample yet (fine for prom-client; a panel shows "No data" until the first one).
    const unsampled = [...used.keys()].filter((n) => resolveName(n, types) !== undefined && !sampled.has(n) && !sampled.has(`${resolveName(n, types)}_count`));
    if (unsampled.length > 0) console.info(`registered, no sample yet on idle services: ${unsampled.sort().join(', ')}`);
    expect(missing, `not exported by either service:\n  ${missing.join('\n  ')}`).toEqual([]);
  });

  it("README's metrics table lists exactly the wxrelay_ metrics the services register (process metrics aside)", () => {
    const types = new Map([...exposedTypes(scraped.gateway), ...exposedTypes(scraped.worker)]);
    const own = [...types.keys()].filter((n) => n.startsWith('wxrelay_') && !/^wxrelay_(gateway|worker)_(process|nodejs)_/.test(n)).sort();
    const operating = section(read('README.md'), '## Operating it');
    const metricsTable = operating.slice(operating.indexOf('### Metrics'), operating.indexOf('\n### ', operating.indexOf('### Metrics') + 1));
    const documented = [...metricNames(metricsTable)].filter((n) => !n.endsWith('_')).sort();
    const rows = new Map([...metricsTable.matchAll(/^\| `(wxrelay_[a-z0-9_]+)` \| (\w+) \|/gm)].map((m) => [m[1] as string, m[2] as string]));
    expect([...rows.keys()].sort(), 'the table has one row per metric').toEqual(documented);
    expect(documented).toEqual(own);
    for (const [name, type] of rows) expect(type, name).toBe(types.get(name));
  });
});

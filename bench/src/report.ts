/** bench/RESULTS.md from one run's results. */
import type { BenchResults } from './run.ts';
import type { ProfileSummary } from './profile.ts';
import { capacityModel, PLANNED_UTILISATION } from './capacity-model.ts';
import { AUTO_ANSWER, AUTO_HOLD_MS, AUTO_KEYWORD, type BurstRun } from './scenarios/replies.ts';
import { median, type LatencySummary } from './stats.ts';

const f = (v: number, digits = 2): string => (Number.isFinite(v) ? v.toFixed(digits) : v === Number.POSITIVE_INFINITY ? '∞' : 'n/a');
const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');

/** Milliseconds as seconds, without trailing zeros: 2000 → `2 s`, 500 → `0.5 s`. */
const secs = (ms: number): string => `${Number((ms / 1000).toFixed(3))} s`;

function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

function profileSection(p: ProfileSummary): string {
  return [
    `#### ${p.label}`,
    '',
    `${f(p.busyMs / 1000, 1)} s busy of ${f(p.totalMs / 1000, 1)} s sampled. Self time by package:`,
    '',
    table(['package / area', 'self ms', '% of busy'], p.byPackage.map((e) => [e.name, f(e.ms, 0), f(e.pct, 1)])),
    '',
    'Top functions by self time:',
    '',
    table(['function', 'self ms', '% of busy'], p.topFunctions.map((e) => [`\`${e.name}\``, f(e.ms, 0), f(e.pct, 1)])),
  ].join('\n');
}

function burstRow(b: BurstRun, run: number): string[] {
  const others = Object.entries(b.outcomes)
    .filter(([k]) => k !== 'answer-1')
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const { fullHold: full, later } = b.live;
  return [
    `\`${b.mode}\``,
    secs(b.llmDelayMs),
    String(run),
    b.mode === 'passive' ? `${int(b.firstAttemptAnswers)} / ${int(b.users)}` : `— (${int(b.apiSends)} API sends)`,
    others === '' ? '—' : others,
    `${f(b.answerFromWrite.p50, 0)} / ${f(b.answerFromWrite.p99, 0)} / ${f(b.answerFromWrite.max, 0)}`,
    ((l: LatencySummary | undefined) => (l === undefined ? '—' : `${f(l.p50, 0)} / ${f(l.p99, 0)}`))(b.mode === 'passive' ? b.answerFromBurst : b.apiFromBurst),
    int(b.heldPeak),
    `${f(b.rssBeforeMB, 1)} → ${b.heldPeak > 0 ? f(b.rssAtPeakMB, 1) : '—'} (max ${f(b.rssMaxMB, 1)})`,
    [b.live.before, b.live.fullHold, b.live.later, b.live.after].map((l) => (l === undefined ? '—' : f(l.heapUsedMB, 1))).join(' → '),
    full === undefined ? '—' : `${f(((full.heapUsedMB - b.live.before.heapUsedMB) * 1024) / full.held, 1)} KB (${int(full.held)} held)`,
    full === undefined || later === undefined ? '—' : `${f((later.heapUsedMB - full.heapUsedMB) / ((later.t - full.t) / 1000))} over ${f((later.t - full.t) / 1000, 1)} s`,
    f(b.redis.perMessage, 1),
    f(b.redis.scriptsPerMessage),
    `${f(b.cpu.machine)} (${f(b.cpu.others)})`,
    f(b.load1),
  ];
}

function repliesSection(r: BenchResults): string[] {
  const x = r.replies;
  if (x === undefined) return [];
  const s = r.settings.replies;
  const out: string[] = [
    '## 8. Reply channels (#12): `REPLY_MODE` passive and auto beside customer-service',
    '',
    `Produced by \`${r.command ?? 'pnpm bench'}\` (\`--only=replies\` runs this scenario alone). Everything on the one ${r.machine.cores}-core machine: the load generator, the gateway, ` +
      `${s.workers} worker process${s.workers > 1 ? 'es' : ''}, Redis and the fakes share the cores, so latencies include the generator's own share of the CPU.`,
    '',
    `### Passive: ${int(s.users)} users at once, the LLM answering in ${s.llmDelaysMs.map(secs).join(' (then ')}${s.llmDelaysMs.length > 1 ? ')' : ''}`,
    '',
    `${int(s.users)} signed plain-mode callbacks, each from its own user on its own connection, written in one loop (the bench's raw-socket generator); ` +
      `worker: ${s.workers} × \`WORKER_CONCURRENCY=${s.concurrency}\` (every LLM call of the burst in flight at once), \`PASSIVE_HOLD_MS\` at its default (4500). ` +
      'The same burst in `customer-service` mode (answered `success` at once, the answer by the fake API) is the baseline for Redis. ' +
      `One unmeasured warm-up burst per mode, then ${s.runs} measured runs per row group. "First request": the user's own answer (its openid and its message's token in the reply) ` +
      'with `x-wxrelay-reply: answer`, `x-wxrelay-attempt: 1` (the generator does not retry; WeChat would retry the rest after 5 s). ' +
      'HTTP answer: the passive reply (passive) or `success` (customer-service), from the request\'s own write. "User has the answer": the passive reply arriving (passive) or the fake API accepting the send (customer-service), from the moment before the first write. ' +
      `Gateway RSS from \`/proc/<pid>/status\` VmRSS and \`wxrelay_gateway_held_requests\` from its metrics port, every ${s.sampleMs} ms. ` +
      '"Live heap": the heap used right after a full GC forced over the gateway\'s inspector (`--inspect`, `HeapProfiler.collectGarbage`): before the burst, once ≥ 99 % of the users are held, ' +
      'about a second later while they still are (passive: those two GCs pause the gateway mid-hold, a few ms each), and after every job completed; RSS alone mostly shows when V8 last collected. ' +
      'Per held request: (all held − before) ÷ held. Redis: every command it ran (`INFO commandstats`, commands run inside scripts included, INFO and the bench\'s own ZCARD polls left out) ' +
      `from just before the burst until every job was completed, less the background counted idle for ${s.idleS} s (same sampling), ÷ messages.`,
    '',
    table(
      ['mode', 'LLM', 'run', 'answered on the first request', 'other outcomes', 'HTTP answer p50 / p99 / max ms, from its write', 'user has the answer p50 / p99 ms, from burst start', 'held at peak', 'gateway RSS MB: before → at peak hold (max)', 'live heap MB: before → all held → ~1 s later → after', 'live heap per held request', 'live heap growth while holding, MB/s', 'Redis commands / msg', 'scripts / msg', 'machine cores (others)', 'load avg (1 min) at start'],
      [...x.passive, ...x.customerService].map((b) => {
        const group = [...x.passive, ...x.customerService].filter((o) => o.mode === b.mode && o.llmDelayMs === b.llmDelayMs);
        return burstRow(b, group.indexOf(b) + 1);
      }),
    ),
    '',
  ];
  // Per-command breakdown: median calls per message, per group.
  const groups = [
    ...s.llmDelaysMs.map((d) => ({ label: `passive, LLM ${secs(d)}`, runs: x.passive.filter((b) => b.llmDelayMs === d) })),
    { label: `customer-service, LLM ${secs(s.llmDelaysMs[0] ?? 0)}`, runs: x.customerService },
  ].filter((g) => g.runs.length > 0);
  const names = [...new Set(groups.flatMap((g) => g.runs.flatMap((b) => Object.keys(b.redis.byCommand))))];
  const per = (g: (typeof groups)[number], name: string): number => median(g.runs.map((b) => b.redis.byCommand[name] ?? 0));
  const spread = (n: string): number => Math.max(...groups.map((g) => per(g, n))) - Math.min(...groups.map((g) => per(g, n)));
  const differ = names.filter((n) => spread(n) >= 0.05).sort((a, b) => spread(b) - spread(a));
  const same = names.filter((n) => !differ.includes(n));
  out.push(
    'Redis commands per message, by command where the groups differ (median over the runs; background not subtracted in these rows):',
    '',
    table(
      ['command', ...groups.map((g) => g.label)],
      [
        ...differ.map((n) => [`\`${n}\``, ...groups.map((g) => f(per(g, n)))]),
        [`the ${same.length} other commands (within 0.05 of each other)`, ...groups.map((g) => f(same.reduce((acc, n) => acc + per(g, n), 0)))],
        ['**all, less background**', ...groups.map((g) => `**${f(median(g.runs.map((b) => b.redis.perMessage)), 1)}**`)],
        ['background (commands/s × window) ÷ msg', ...groups.map((g) => f(median(g.runs.map((b) => b.redis.background / b.users))))],
      ],
    ),
    '',
  );

  const a = s.auto;
  out.push(
    `### Auto: a keyword rule, ${a.rates.map((rate) => `${int(rate)} msg/s`).join(' (and ')}${a.rates.length > 1 ? ' for context)' : ''} offered for ${a.durationS} s`,
    '',
    `\`REPLY_MODE=auto\`, \`AUTO_HOLD_MS=${AUTO_HOLD_MS}\` (the default); \`REPLY_RULES_FILE\` with one rule (text \`${AUTO_KEYWORD}\` → \`${AUTO_ANSWER}\`), no LLM; 1 worker × \`WORKER_CONCURRENCY=${a.concurrency}\`. ` +
      `Open loop: a fixed send schedule whatever the answers do (${a.connections} keep-alive connections; a request whose turn finds none free waits, charged to it), each message from its own user; ` +
      `${a.warmupS} s of each run left out as warm-up, after an unmeasured 2 s warm-up run per rate. Passive latency: the scheduled send → the passive reply received. ` +
      '`success`: the gateway stopped holding, and the customer-service API (the fake) got the answer; its latency runs to the send the fake accepted. ' +
      'CPU: cores used during the run by each process, and by the whole machine (/proc/stat); "others" is the machine less the bench\'s processes (other work sharing the cores).',
    '',
    table(
      ['rate', 'run', 'achieved req/s', 'answered passively', '`success` (+ API)', 'passive p50 / p99 / max ms', 'passive p50 / p99 ms from own write', 'API path p50 / p99 ms', 'passive share, each second', 'generator lag p99 ms', 'cores: gateway / worker / Redis / fakes / generator', 'machine cores (others)', 'load avg at start'],
      x.auto.map((o) => [
        `${int(o.rate)} msg/s`,
        String(x.auto.filter((y) => y.rate === o.rate).indexOf(o) + 1),
        int(o.achievedRate),
        `${int(o.passive)} / ${int(o.sent)} (${f((o.passive / o.sent) * 100, 1)} %)`,
        `${int(o.success)} (${int(o.apiSends)} sent)${o.other > 0 ? `, ${int(o.other)} other` : ''}`,
        o.passive === 0 ? '—' : `${f(o.passiveLatency.p50)} / ${f(o.passiveLatency.p99)} / ${f(o.passiveLatency.max, 1)}`,
        o.passive === 0 ? '—' : `${f(o.passiveFromWrite.p50)} / ${f(o.passiveFromWrite.p99)}`,
        o.apiSends === 0 ? '—' : `${f(o.apiLatency.p50, 0)} / ${f(o.apiLatency.p99, 0)}`,
        o.passiveShareBySecond.map((v) => f(v * 100, 0)).join(' '),
        f(o.generatorLag.p99),
        [o.cpu.gateway, o.cpu.workers, o.cpu.redis, o.cpu.fakes, o.cpu.generator].map((v) => f(v)).join(' / '),
        `${f(o.cpu.machine)} (${f(o.cpu.others)})`,
        f(o.load1),
      ]),
    ),
    '',
  );
  return out;
}

/** `analysis` is the hand-written reading of the profiles (bench/analysis.md), printed as it is. */
function capacitySection(r: BenchResults): string[] {
  const c = r.capacity!;
  const m = capacityModel(c);
  const x = m.figures;
  const us = (v: number | undefined): string => f(v ?? Number.NaN, 0);
  const last = c.runs[c.runs.length - 1];
  const top = (t: Readonly<Record<string, number>> | undefined): string =>
    Object.entries(t ?? {})
      .map(([k, v]) => `${k} ${f(v, 2)}`)
      .join(', ');
  const carried = r.carried?.['10'];
  return [
    '## 10. Capacity: each part\'s cost per message, and the model (#14)',
    '',
    ...(carried === undefined ? [] : [`From the run of ${carried.startedAt} (commit ${carried.commit}).`, '']),
    `A burst of ${int(c.messages)} keyword replies (each message from its own user; a rule in \`REPLY_RULES_FILE\` answers at once, by the customer-service API), in two phases so each side is read alone: ` +
      '**(1) gateway side**: the inbound queue paused (BullMQ\'s pause: the gateway\'s add puts jobs in `paused`), the burst through the gateway as fast as it acks (64 connections, closed loop); ' +
      '**(2) worker side**: the queue resumed, the workers (already running, warmed by 2,000 messages first) drain the backlog into the fake WeChat API. ' +
      `Workers: concurrency ${c.concurrency}. CPU from \`/proc/<pid>/stat\` (user + system) of each process over the phase ÷ messages; Redis commands from \`INFO commandstats\` (commands inside scripts counted, INFO left out); ` +
      'memory from `used_memory`: growth with the burst queued, and what is left over the empty baseline once every job is done (completed jobs kept by `JOB_RETENTION`, dedup keys until their TTL, the users\' turn and quota keys). ' +
      'Then the same backlog (the same job data, BullMQ\'s `addBulk`) is drained by plain BullMQ workers with a no-op processor and the same options (`bench/src/servers/bare-bullmq-worker.ts`): BullMQ\'s own cost per job.',
    '',
    table(
      ['workers', 'run', 'enqueue msg/s', 'drain msg/s', 'gateway µs', 'Redis µs (gateway side)', 'generator µs', 'worker µs', 'Redis µs (worker side)', 'fake API µs', 'Redis cmds (gateway / worker side)', 'scripts (worker side)', 'bytes per queued / done msg', 'longest Redis call ms (gateway / worker side)', 'users answered', 'ack errors', 'other cores', 'load (1 min)'],
      c.runs.map((run, i) => [
        String(run.workers),
        String(c.runs.slice(0, i + 1).filter((y) => y.workers === run.workers).length),
        int(run.enqueueRate),
        `**${int(run.drainRate)}**`,
        us(run.gatewaySide.cpuUs.gateway),
        us(run.gatewaySide.cpuUs.redis),
        us(run.gatewaySide.cpuUs.generator),
        us(run.workerSide.cpuUs.workers),
        us(run.workerSide.cpuUs.redis),
        us(run.workerSide.cpuUs.fakes),
        `${f(run.gatewaySide.redisCommands, 1)} / ${f(run.workerSide.redisCommands, 1)}`,
        f(run.workerSide.redisScripts, 2),
        `${int(run.memoryPerQueuedBytes)} / ${int(run.memoryPerDoneBytes)}`,
        `${f((run.gatewaySide.longestCallUs ?? Number.NaN) / 1000, 1)} / ${f((run.workerSide.longestCallUs ?? Number.NaN) / 1000, 1)}`,
        `${int(run.usersAnswered)} / ${int(run.messages)}`,
        int(run.ackErrors),
        `${f(run.gatewaySide.otherCores)} / ${f(run.workerSide.otherCores)}`,
        f(run.load1),
      ]),
    ),
    '',
    'Plain BullMQ, no-op processor, the same backlog:',
    '',
    table(
      ['workers', 'drain msg/s', 'worker µs', 'Redis µs', 'Redis cmds', 'scripts', 'longest Redis call ms'],
      c.floor.map((fl) => [String(fl.workers), int(fl.drainRate), us(fl.side.cpuUs.workers), us(fl.side.cpuUs.redis), f(fl.side.redisCommands, 1), f(fl.side.redisScripts, 2), f((fl.side.longestCallUs ?? Number.NaN) / 1000, 1)]),
    ),
    '',
    'The longest Redis call is SLOWLOG\'s (calls over 1 ms; wall time, so a Redis descheduled by the other processes on the 2 cores shows too). On the worker side it is the first job\'s start: its catch-up with the event stream registers every queued job in its user\'s turn list in one call (bounded by the stream\'s cap, `INBOUND_EVENTS_MAX_LEN`).',
    '',
    ...(last === undefined ? [] : [`Redis commands per message in the last run: gateway side ${top(last.gatewaySide.redisTop)}; worker side ${top(last.workerSide.redisTop)}.`, '']),
    '### The capacity model',
    '',
    `Medians of the runs above: gateway **${us(x.gatewayUs)} µs**, worker **${us(x.workerUs)} µs** (the larger of the 1- and 2-process medians), Redis **${us(x.redisGatewayUs)} + ${us(x.redisWorkerUs)} µs** (gateway side + worker side; ` +
      `${f(x.redisGatewayCommands, 1)} + ${f(x.redisWorkerCommands, 1)} commands) per message; plain BullMQ's own share of the worker side: ${us(x.floorRedisUs)} µs of Redis, ${f(x.floorRedisCommands, 1)} commands, ${us(x.floorWorkerUs)} µs of its process. ` +
      `Redis memory: **${int(x.queuedBytes)} B per queued message**, ${int(x.doneBytes)} B per finished one while kept.`,
    '',
    table(
      ['', 'messages/s at 100 % of one core'],
      [
        ['gateway process (per core)', int(m.perGatewayCore)],
        ['worker process, keyword replies (per core)', int(m.perWorkerCore)],
        ['Redis shard (its one main thread; both sides)', int(m.perRedisShard)],
      ],
    ),
    '',
    `Sized at ${PLANNED_UTILISATION * 100} % of that (the rest is headroom for a spike, GC, a failover's catch-up):`,
    '',
    table(
      ['callbacks/s', 'gateway cores', 'worker processes (1 core each)', 'Redis shards (QUEUE_SHARDS, Cluster masters)', 'Redis memory per minute of backlog'],
      m.rows.map((row) => [int(row.rate), int(row.gatewayCores), int(row.workerProcesses), int(row.redisShards), `${f(row.backlogMinuteGb, 2)} GB`]),
    ),
    '',
  ];
}

export function writeReport(r: BenchResults, analysis?: string): string {
  const s = r.settings;
  const out: string[] = [];
  const cores = Number(r.machine.cores);
  // Only the load before the run says whether something else was running: the load after it is
  // mostly the bench's own (Redis, servers and generators keep 2 cores busy for its last minute).
  const busy = (r.load.before[0] ?? 0) > 0.5 * cores;
  out.push(
    '# wxrelay benchmarks',
    '',
    `Written by \`${r.command ?? 'pnpm bench'}\` (bench/src/main.ts) on ${r.startedAt}; the run took ${f(r.durationS, 0)} s${r.quick ? ' in **quick mode** (short runs, not for comparison)' : ''}. ` +
      'Raw runs: `bench/results.json`. Every figure is the median of the runs listed; ratios are taken run by run ' +
      '(run i of one server over run i of the other, servers interleaved A B C D, A B C D, …) and then their median.',
    '',
  );
  if (r.carried !== undefined) {
    const byRun = new Map<string, string[]>();
    for (const [scenario, o] of Object.entries(r.carried)) byRun.set(`${o.startedAt} (commit ${o.commit})`, [...(byRun.get(`${o.startedAt} (commit ${o.commit})`) ?? []), scenario]);
    out.push(
      `**This run measured only part of the scenarios**; the sections of the others are carried over from earlier runs: ${[...byRun].map(([run, scenarios]) => `${scenarios.join(', ')} from the run of ${run}`).join('; ')}. ` +
        'Machine, load average and commit below are this run\'s.',
      '',
    );
  }
  if (r.git.dirty.length > 0) {
    out.push(`Commit ${r.git.commit}, **with uncommitted changes** in: ${r.git.dirty.map((d) => `\`${d.slice(3)}\``).join(', ')} (the build measured includes them).`, '');
  } else {
    out.push(`Commit ${r.git.commit}, clean.`, '');
  }
  out.push(
    '## Machine and versions',
    '',
    table(['', ''], [...Object.entries(r.machine), ...Object.entries(r.versions)].map(([k, v]) => [k, v])),
    '',
    `Load average (1/5/15 min) before: ${r.load.before.map((l) => f(l)).join(' / ')}, after: ${r.load.after.map((l) => f(l)).join(' / ')} (the bench's own processes).` +
      (busy ? ' **The machine was busy with other work during the run: absolute numbers are low and noisy; the paired ratios are more trustworthy.**' : ''),
    '',
    '## Settings',
    '',
    `- Everything on one machine: Redis, the server under test and the load generator share the ${r.machine.cores} cores.`,
    `- Redis: its own \`redis-server\` (\`${r.env.redisArgs.join(' ')}\`, data in a temp dir), flushed and its AOF rewritten before every gateway run.`,
    `- Gateway: \`services/gateway/dist/main.js\`, one process, env ${Object.entries(r.env.gateway).map(([k, v]) => `\`${k}=${k.includes('TOKEN') || k.includes('KEY') ? '…' : v}\``).join(' ')}. ` +
      'The timestamp window stays at its default (300 s): plain-mode runs sign with a fresh timestamp per run; the safe-mode pool is re-signed before it is 200 s old.',
    `- Worker: \`services/worker/dist/main.js\`, env ${Object.entries(r.env.worker).map(([k, v]) => `\`${k}=${k.includes('SECRET') ? '…' : v}\``).join(' ')}; the fake WeChat API runs with \`enforceWindow: false\` in its own process.`,
    '- Peers and ceiling: each its own single Node process, logging off (`bench/src/servers/`). co-wechat and wechat answer every text with a passive text reply (encrypted in safe mode).',
    `- Closed loop (1, 2): \`wrk -t${s.closed.threads} -c${s.closed.connections}\`, ${s.closed.warmupS} s warm-up + ${s.closed.durationS} s measured, ${s.closed.runs} rounds. ` +
      'Plain: `bench/wrk/plain.lua`, a unique MsgId per request (per-thread counter), signature precomputed for the run. ' +
      `Safe: \`bench/wrk/pool.lua\` replays ${int(s.safePool)} pre-generated callbacks (a fresh Encrypt and msg_signature each, written by the bench before the runs), so the generator does no crypto.`,
    `- Open loop (3): a Node generator on raw sockets (\`bench/src/load/http-load.ts\`), ${s.open.connections} keep-alive connections, a fixed send schedule; latency runs from each request's *scheduled* time (no coordinated omission). ` +
      `${s.open.warmupS} s warm-up + ${s.open.durationS} s measured per run, ${s.open.runs} runs per rate.`,
    `- End to end (4): ${s.e2e.rate} msg/s for ${s.e2e.warmupS} + ${s.e2e.durationS} s (${s.e2e.runs} runs), each message from its own user, with a token in its text; latency = the fake API accepting the customer-service send − the scheduled POST (same clock, \`performance.timeOrigin + performance.now()\`). ` +
      `Burst: ${int(s.e2e.burst)} messages **through the gateway** (${s.e2e.burstConnections} connections, as fast as it acks) with the workers already running; drain = first POST → last send. Workers: concurrency ${s.e2e.concurrency}.`,
    `- Slow handler (5): fake LLM answering after ${s.slow.llmDelayMs} ms; ${int(s.slow.users)} users write at once (${int(s.slow.users)} connections, all requests written in one loop), ${s.slow.runs} runs per layout.`,
    `- Micro (6): mitata \`measure\`, ${s.micro.runs} passes per function, in the bench process before any server starts.`,
    ...(s.capacity === undefined ? [] : [`- Capacity (10): ${int(s.capacity.messages)} keyword replies queued with the queue paused, then drained by ${s.capacity.workerCounts.join(' and ')} worker process(es), ${s.capacity.runs} runs each; details in its section.`]),
    ...(s.replies === undefined ? [] : [`- Reply channels (8): passive and customer-service bursts of ${int(s.replies.users)} users, auto at ${s.replies.auto.rates.map((x) => int(x)).join(' and ')} msg/s; details in its section.`]),
    '',
    '## Targets',
    '',
    table(
      ['target', 'threshold', 'this run', ''],
      r.targets.map((t) => [t.name, t.threshold, t.value, t.met === undefined ? 'not run' : t.met ? '**met**' : '**missed**']),
    ),
    '',
  );

  for (const [title, c] of [
    ['## 1. Ceiling and peers: plain mode, closed loop', r.closed.plain],
    ['## 2. Safe mode (decrypt + msg_signature), closed loop', r.closed.safe],
  ] as const) {
    if (c === undefined) continue;
    out.push(
      title,
      '',
      table(
        ['server', 'req/s', 'p50 ms', 'p99 ms', 'server CPU (cores)', 'server CPU µs / req', 'gateway ÷ this', 'req/s of each run'],
        c.servers.map((sv) => [
          sv.server,
          int(sv.reqPerSec),
          f(sv.p50Ms),
          f(sv.p99Ms),
          f(sv.serverCores),
          f((sv.serverCores / sv.reqPerSec) * 1e6, 0),
          c.ratios[sv.server] === undefined ? '—' : `${f(c.ratios[sv.server]!)}×`,
          sv.runs.map((x) => int(x.reqPerSec)).join(', '),
        ]),
      ),
      '',
    );
    const gw = c.servers.find((sv) => sv.server === 'wxrelay gateway');
    if (gw !== undefined) out.push(`Redis used ${f(gw.runs.map((x) => x.redisCores).sort()[gw.runs.length >> 1] ?? Number.NaN)} cores during the gateway's runs (median).`, '');
  }

  if (r.open !== undefined) {
    out.push(
      '## 3. Open loop at fixed rates (gateway, plain mode)',
      '',
      table(
        ['rate', 'ack p50 ms', 'ack p99 ms', 'ack max ms', 'generator lag p99 ms', 'waited for a connection p99 ms', 'gateway CPU (cores)', 'gateway CPU µs / msg', 'errors', 'p99 of each run'],
        r.open.map((o) => [
          `${int(o.rate)} msg/s`,
          f(o.ack.p50),
          f(o.ack.p99),
          f(o.ack.max, 1),
          f(o.lag.p99),
          f(o.connWait.p99),
          f(o.gatewayCores),
          f((o.gatewayCores / o.rate) * 1e6, 0),
          String(o.runs.reduce((a, x) => a + x.errors, 0)),
          o.runs.map((x) => f(x.ack.p99)).join(', '),
        ]),
      ),
      '',
      `Generator lag is how late the generator's own timer got round to a request; "waited for a connection" is how long a due request found all ${s.open.connections} connections busy (the server answering too slowly). Both are included in the ack latency, which runs from the scheduled time.`,
      '',
    );
  }

  if (r.e2e !== undefined) {
    out.push(
      '## 4. End to end (gateway → Redis → worker → fake WeChat API), echo handler',
      '',
      table(
        ['workers', `e2e p50 ms @${int(s.e2e.rate)}/s`, 'e2e p99 ms', 'e2e max ms', 'ack p50 ms', `${int(s.e2e.burst)} burst: queued in s`, 'drained in s', 'msg/s', 'drain s of each run'],
        r.e2e.map((e) => [
          `${e.workers} × ${e.concurrency}`,
          f(e.e2e.p50),
          f(e.e2e.p99),
          f(e.e2e.max, 1),
          f(e.ack.p50),
          f(e.enqueueS),
          f(e.drainS),
          int(e.throughput),
          e.drainRuns.map((d) => f(d.drainS)).join(', '),
        ]),
      ),
      '',
    );
    const lost = r.e2e.flatMap((e) => [...e.latencyRuns.map((x) => x.sent + Math.round(s.e2e.rate * s.e2e.warmupS) - x.delivered), ...e.drainRuns.map((d) => d.messages - d.delivered)]).filter((x) => x > 0);
    if (lost.length > 0) out.push(`**Undelivered messages in some runs:** ${lost.join(', ')}.`, '');
  }

  if (r.slow !== undefined) {
    out.push(
      `## 5. Slow handler: LLM answering in ${f(s.slow.llmDelayMs / 1000, 0)} s, ${int(s.slow.users)} users at once`,
      '',
      table(
        ['workers × concurrency', 'max ack ms (from burst start)', 'max ack ms (from own write)', 'users answered', 'last reply after s', 'sufficed'],
        r.slow.map((x) => [`${x.workers} × ${x.concurrency}`, f(x.maxAckFromBurstMs, 1), f(x.maxAckFromWriteMs, 1), `${int(x.usersAnswered)} / ${int(s.slow.users)}`, f(x.totalS), x.sufficed ? 'yes' : 'no']),
      ),
      '',
      '"Sufficed": every user answered within one LLM round (+2.5 s) and every ack was a `success`. The ack columns are each run\'s maximum (median over runs); "from burst start" is the stricter one (the moment before the first of the requests was written).',
      '',
    );
    const c = r.slowCeiling;
    if (c !== undefined) {
      out.push(
        `The same burst against ${c.server} (answering \`success\` at once: no verification, no Redis, no workers running), the ceiling for this machine: max ack **${f(c.maxAckFromBurstMs, 1)} ms** from burst start (${f(c.maxAckFromWriteMs, 1)} ms from own write); runs ${c.runs.map((x) => f(x.ackFromBurst.max, 1)).join(', ')} ms.`,
        '',
      );
    }
  }

  if (r.micro !== undefined) {
    const groups = [...new Set(r.micro.map((m) => `${m.group}\u0000${m.name}`))];
    out.push(
      '## 6. Protocol micro-benchmarks (µs per op)',
      '',
      table(
        ['operation', 'ours (@wxrelay/shared)', 'fast-xml-parser, default options', 'ours ÷ fxp'],
        groups.map((g) => {
          const [group, name] = g.split('\u0000') as [string, string];
          const ours = r.micro!.find((m) => m.group === group && m.name === name && m.impl === 'ours');
          const fxp = r.micro!.find((m) => m.group === group && m.name === name && m.impl !== 'ours');
          return [name, ours === undefined ? '—' : f(ours.us), fxp === undefined ? '—' : f(fxp.us), ours !== undefined && fxp !== undefined ? `${f(ours.us / fxp.us)}×` : '—'];
        }),
      ),
      '',
      'fast-xml-parser rows use one `new XMLParser()` / `new XMLBuilder()` made once (default options: numbers are parsed, so a 64-bit MsgId loses digits; no CDATA in built replies). ' +
        'The safe-mode row of fast-xml-parser uses our msg_signature check and AES decryption, so it differs only in the XML parsing.',
      '',
    );
  }

  if (r.durability !== undefined) {
    const d = r.durability;
    out.push(
      '## 7. Durable acks: Redis `appendfsync always` vs `everysec` (gateway, plain mode, closed loop)',
      '',
      table(
        ['appendfsync', 'req/s', 'p50 ms', 'p99 ms', 'redis cores'],
        d.modes.map((m) => [`\`${m.appendfsync}\``, int(m.reqPerSec), f(m.p50Ms), f(m.p99Ms), f(m.redisCores)]),
      ),
      '',
      `\`always\` ÷ \`everysec\`: **${f(d.alwaysOverEverysec * 100, 1)} %** of the req/s (median of the paired rounds). ` +
        `Same Redis and gateway, only \`CONFIG SET appendfsync\` between runs; the AOF was in \`${d.aofDir}\` (${d.aofFilesystem}), and fsync costs what that disk costs.`,
      '',
    );
  }

  out.push(...repliesSection(r));
  if (r.acks !== undefined) {
    const a = r.acks;
    const mode = (k: number) => a.modes.find((m) => m.ackReplicas === k);
    out.push(
      '## 9. Acks that survive a failover (#14): `REDIS_ACK_REPLICAS=1` vs `0` (gateway, plain mode, closed loop, a local replica)',
      '',
      `Measured on ${a.ranAt} by \`${a.command}\` (commit ${a.commit}${a.quick ? ', **quick mode**' : ''}; load average before: ${a.loadBefore.map((l) => f(l)).join(' / ')}). ` +
        `The bench's Redis gets a replica on the same machine (\`redis-server --replicaof\`, same settings) and two gateways run against them, one per setting, both with the replica attached: ` +
        `the difference is the \`WAIT 1 <ms>\` after each batch alone. Same closed loop as scenario 1 (\`wrk -t${s.closed.threads} -c${s.closed.connections}\`, ${s.closed.warmupS} s warm-up + ${s.closed.durationS} s measured), ` +
        `${s.acks.runs} rounds interleaving the two gateways, \`ENQUEUE_TIMEOUT_MS=${a.enqueueTimeoutMs}\`.`,
      '',
      table(
        ['REDIS_ACK_REPLICAS', 'req/s', 'p50 ms', 'p99 ms', 'gateway cores', 'redis cores', 'replica cores', 'non-2xx / errors', 'req/s of each run'],
        a.modes.map((m) => [`\`${m.ackReplicas}\``, int(m.reqPerSec), f(m.p50Ms), f(m.p99Ms), f(m.gatewayCores), f(m.redisCores), f(m.replicaCores), int(m.errors), m.runs.map((x) => int(x.reqPerSec)).join(', ')]),
      ),
      '',
      `\`REDIS_ACK_REPLICAS=1\` ÷ \`0\`: **${f(a.oneOverZero * 100, 1)} %** of the req/s; ack p99 ${f(mode(0)?.p99Ms ?? Number.NaN)} → ${f(mode(1)?.p99Ms ?? Number.NaN)} ms ` +
        `(${a.p99DeltaMs >= 0 ? '+' : ''}${f(a.p99DeltaMs)} ms, median of the paired rounds). A replica on another machine adds its round trip to every batch's WAIT, and the gateway's one Redis connection waits with it.`,
      '',
    );
    if (a.notes.length > 0) out.push(...a.notes.map((n) => `- ${n}`), '');
    const earlier = r.acksEarlier ?? [];
    if (earlier.length > 0) {
      out.push('Earlier runs of this scenario:', '');
      for (const e of earlier) {
        const m0 = e.modes.find((m) => m.ackReplicas === 0);
        const m1 = e.modes.find((m) => m.ackReplicas === 1);
        out.push(
          `- ${e.ranAt} (\`${e.command}\`, commit ${e.commit}): \`0\` ${int(m0?.reqPerSec ?? Number.NaN)} req/s, p99 ${f(m0?.p99Ms ?? Number.NaN)} ms; ` +
            `\`1\` ${int(m1?.reqPerSec ?? Number.NaN)} req/s, p99 ${f(m1?.p99Ms ?? Number.NaN)} ms; **${f(e.oneOverZero * 100, 1)} %** of the req/s, p99 ${e.p99DeltaMs >= 0 ? '+' : ''}${f(e.p99DeltaMs)} ms`,
        );
      }
      out.push('');
    }
  }

  if (r.capacity !== undefined) out.push(...capacitySection(r));

  if (analysis !== undefined && analysis.trim() !== '') out.push('## Where the time goes, and what to fix', '', analysis.trim(), '');

  if (r.profiles.length > 0) {
    out.push('## CPU profiles', '', 'Taken after the scenarios for each missed target (or with `--profile`); `(garbage collector)`, `(program)` are V8 itself.', '');
    for (const p of r.profiles) out.push(profileSection(p), '');
  }

  if (r.notes.length > 0) out.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '');
  return `${out.join('\n')}\n`;
}

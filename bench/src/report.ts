/** bench/RESULTS.md from one run's results. */
import type { BenchResults } from './run.ts';
import type { ProfileSummary } from './profile.ts';

const f = (v: number, digits = 2): string => (Number.isFinite(v) ? v.toFixed(digits) : v === Number.POSITIVE_INFINITY ? '∞' : 'n/a');
const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');

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

/** `analysis` is the hand-written reading of the profiles (bench/analysis.md), printed as it is. */
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
    `Written by \`pnpm bench\` (bench/src/main.ts) on ${r.startedAt}; the run took ${f(r.durationS, 0)} s${r.quick ? ' in **quick mode** (short runs, not for comparison)' : ''}. ` +
      'Raw runs: `bench/results.json`. Every figure is the median of the runs listed; ratios are taken run by run ' +
      '(run i of one server over run i of the other, servers interleaved A B C D, A B C D, …) and then their median.',
    '',
  );
  for (const p of r.partialRuns ?? []) {
    out.push(`Re-measured since, on ${p.at} at commit ${p.commit}${p.dirty.length > 0 ? ' (with uncommitted changes)' : ''}: scenario${p.only.length > 1 ? 's' : ''} ${p.only.join(', ')} (\`${p.command}\`); every other section is from the run above.`, '');
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

  if (r.acks !== undefined) {
    const a = r.acks;
    const mode = (k: number) => a.modes.find((m) => m.ackReplicas === k);
    out.push(
      '## 8. Acks that survive a failover (#14): `REDIS_ACK_REPLICAS=1` vs `0` (gateway, plain mode, closed loop, a local replica)',
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

  if (analysis !== undefined && analysis.trim() !== '') out.push('## Where the time goes, and what to fix', '', analysis.trim(), '');

  if (r.profiles.length > 0) {
    out.push('## CPU profiles', '', 'Taken after the scenarios for each missed target (or with `--profile`); `(garbage collector)`, `(program)` are V8 itself.', '');
    for (const p of r.profiles) out.push(profileSection(p), '');
  }

  if (r.notes.length > 0) out.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '');
  return `${out.join('\n')}\n`;
}

/**
 * Where the time goes: V8 CPU profiles (`node --cpu-prof` for child processes, the inspector for
 * in-process code) summarised as self time by package and by function.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly hitCount?: number;
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

export interface ProfileEntry {
  readonly name: string;
  readonly ms: number;
  /** Share of the busy (non-idle) time, %. */
  readonly pct: number;
}

export interface ProfileSummary {
  readonly label: string;
  readonly totalMs: number;
  readonly busyMs: number;
  readonly byPackage: ProfileEntry[];
  readonly topFunctions: ProfileEntry[];
}

const NODE_MODULES = '/node_modules/';

/** The package (or area) a script URL belongs to. */
function packageOf(frame: CallFrame): string {
  const url = frame.url;
  if (url === '') return frame.functionName.startsWith('(') ? frame.functionName : '(native / V8 builtins)';
  if (url.startsWith('node:')) {
    const parts = url.slice(5).split('/');
    return parts[0] === 'internal' ? `node:internal/${parts[1] ?? ''}`.replace(/\.js$/, '') : `node:${parts[0]}`;
  }
  const at = url.lastIndexOf(NODE_MODULES);
  if (at !== -1) {
    const rest = url.slice(at + NODE_MODULES.length).split('/');
    return rest[0]?.startsWith('@') === true ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const workspace = /\/(packages|services|bench)\/([^/]+)\//.exec(url);
  if (workspace !== null) return workspace[1] === 'packages' ? `@wxrelay/${workspace[2]}` : `${workspace[1]}/${workspace[2]}`;
  return url;
}

function shortUrl(url: string): string {
  const at = url.lastIndexOf(NODE_MODULES);
  if (at !== -1) return url.slice(at + NODE_MODULES.length).replace(/^\.pnpm\/[^/]+\/node_modules\//, '');
  const ws = /\/((?:packages|services|bench)\/.*)$/.exec(url);
  return ws?.[1] ?? url.replace(/^file:\/\//, '');
}

/**
 * Self time by package and by function. `skipFirstMs` drops the samples of the process's first
 * milliseconds (its startup: module loading and compiling, which a load test does not measure).
 */
export function summarizeProfile(profile: CpuProfile, label: string, skipFirstMs = 0, top = 15): ProfileSummary {
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length > 0) {
    // timeDeltas[i + 1] is the time spent in the state sampled at i.
    let t = profile.startTime;
    for (let i = 0; i < samples.length; i++) {
      t += deltas[i] ?? 0;
      if (t - profile.startTime < skipFirstMs * 1000) continue;
      const us = deltas[i + 1] ?? deltas[i] ?? 0;
      selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + us);
    }
  } else {
    const totalHits = profile.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0);
    const per = totalHits === 0 ? 0 : (profile.endTime - profile.startTime) / totalHits;
    for (const n of profile.nodes) selfUs.set(n.id, (n.hitCount ?? 0) * per);
  }
  const byPkg = new Map<string, number>();
  const byFn = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0) continue;
    totalUs += us;
    const f = node.callFrame;
    if (f.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    const pkg = packageOf(f);
    byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + us);
    const fn = f.url === '' ? f.functionName : `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;
  const entries = (m: Map<string, number>, n: number): ProfileEntry[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, ms: us / 1000, pct: busyUs === 0 ? 0 : (100 * us) / busyUs }));
  return { label, totalMs: totalUs / 1000, busyMs: busyUs / 1000, byPackage: entries(byPkg, 12), topFunctions: entries(byFn, top) };
}

/** Reads the newest `.cpuprofile` a `--cpu-prof --cpu-prof-dir=dir` process wrote. */
export function readProfileFrom(dir: string): CpuProfile {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  const newest = files.at(-1);
  if (newest === undefined) throw new Error(`no .cpuprofile in ${dir}`);
  return JSON.parse(readFileSync(join(dir, newest), 'utf8')) as CpuProfile;
}

/** Profiles `fn` run in a loop for `ms` in this process (V8 sampling every 50 µs). */
export async function profileInProcess(fn: () => unknown, ms: number, label: string): Promise<ProfileSummary> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 50 });
    await session.post('Profiler.start');
    const end = performance.now() + ms;
    while (performance.now() < end) for (let i = 0; i < 1000; i++) fn();
    const { profile } = await session.post('Profiler.stop');
    return summarizeProfile(profile, label);
  } finally {
    session.disconnect();
  }
}

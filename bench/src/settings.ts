/**
 * The identity every server under test shares, and the fixed settings of each scenario. Everything
 * here is written into RESULTS.md, so a reader can rerun with the same numbers.
 */

export const IDENTITY = {
  token: 'benchtoken2024',
  appId: 'wx0123456789abcdef',
  appSecret: 'benchsecret0123456789abcdef012345',
  encodingAesKey: 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG',
  account: 'gh_0123456789ab',
  /** The user of the closed-loop scenarios (the gateway does not care who writes). */
  openid: 'oBench0000000000000000000001',
} as const;

export interface Settings {
  /** Closed loop (scenarios 1 and 2). */
  readonly closed: { readonly connections: number; readonly threads: number; readonly warmupS: number; readonly durationS: number; readonly runs: number };
  /** Open loop (scenario 3). */
  readonly open: { readonly rates: readonly number[]; readonly connections: number; readonly warmupS: number; readonly durationS: number; readonly runs: number };
  /** End to end (scenario 4). */
  readonly e2e: {
    readonly rate: number;
    readonly warmupS: number;
    readonly durationS: number;
    readonly runs: number;
    readonly burst: number;
    readonly burstConnections: number;
    readonly workerCounts: readonly number[];
    readonly concurrency: number;
  };
  /** Slow handler (scenario 5). */
  readonly slow: { readonly users: number; readonly llmDelayMs: number; readonly runs: number; readonly configs: readonly { readonly workers: number; readonly concurrency: number }[]; readonly ackBudgetMs: number };
  /** Protocol micro-benchmarks (scenario 6): passes of mitata's `measure` per function. */
  readonly micro: { readonly runs: number };
  /** Encrypted bodies pre-generated for scenario 2 (one per request: unique MsgIds). */
  readonly safePool: number;
  /** Scenario 7 (appendfsync always vs everysec): paired rounds, each on scenario 1's closed loop. */
  readonly durability: { readonly runs: number };
  /** Scenario 8: reply channels (REPLY_MODE passive and auto beside customer-service). */
  readonly replies: RepliesSettings;
  /** Scenario 9 (REDIS_ACK_REPLICAS=1 vs 0, a local replica): paired rounds, each on scenario 1's closed loop. */
  readonly acks: { readonly runs: number };
  /** Scenario 10: each side's cost per message (gateway with the queue paused, then the workers draining it). */
  readonly capacity: { readonly messages: number; readonly workerCounts: readonly number[]; readonly concurrency: number; readonly runs: number };
}

export interface RepliesSettings {
  /** Passive (and the same burst in customer-service mode): users writing at once, one connection each. */
  readonly users: number;
  /**
   * The fake LLM's answer time per burst: the first is the headline case; each further one (its
   * answers well within PASSIVE_HOLD_MS) repeats the passive burst, so Redis commands per message
   * can be compared across hold times.
   */
  readonly llmDelaysMs: readonly number[];
  /** Worker processes × WORKER_CONCURRENCY for the bursts: every LLM call of the burst in flight at once. */
  readonly workers: number;
  readonly concurrency: number;
  /** Measured bursts per mode and LLM time (after one unmeasured warm-up burst). */
  readonly runs: number;
  /** The gateway's RSS and metrics are read this often during a burst, ms. */
  readonly sampleMs: number;
  /** Redis commands are counted idle (same sampling) this long first: the background subtracted from each run. */
  readonly idleS: number;
  /** Auto mode: a keyword rule answering at once, open loop. */
  readonly auto: {
    /** Offered rates, msg/s: the first is the headline (the target's); further ones for context. */
    readonly rates: readonly number[];
    readonly warmupS: number;
    readonly durationS: number;
    readonly connections: number;
    readonly concurrency: number;
    readonly runs: number;
  };
}

export const FULL: Settings = {
  closed: { connections: 64, threads: 1, warmupS: 1, durationS: 5, runs: 3 },
  open: { rates: [1000, 5000], connections: 64, warmupS: 1, durationS: 6, runs: 3 },
  e2e: { rate: 1000, warmupS: 1, durationS: 5, runs: 3, burst: 20_000, burstConnections: 64, workerCounts: [1, 2], concurrency: 50 },
  slow: {
    users: 1000,
    llmDelayMs: 5000,
    runs: 3,
    configs: [
      { workers: 1, concurrency: 1000 },
      { workers: 2, concurrency: 500 },
    ],
    ackBudgetMs: 50,
  },
  micro: { runs: 3 },
  safePool: 60_000,
  durability: { runs: 5 },
  replies: {
    users: 1000,
    llmDelaysMs: [2000, 500],
    workers: 1,
    concurrency: 1000,
    runs: 2,
    sampleMs: 200,
    idleS: 2,
    auto: { rates: [1000, 200], warmupS: 1, durationS: 10, connections: 1000, concurrency: 50, runs: 2 },
  },
  acks: { runs: 5 },
  capacity: { messages: 20_000, workerCounts: [1, 2], concurrency: 50, runs: 3 },
};

/** A fast pass over every scenario, for working on the harness itself (`pnpm bench --quick`). */
export const QUICK: Settings = {
  closed: { ...FULL.closed, warmupS: 1, durationS: 2, runs: 1 },
  open: { ...FULL.open, durationS: 2, runs: 1 },
  e2e: { ...FULL.e2e, durationS: 2, runs: 1, burst: 2000 },
  slow: { ...FULL.slow, users: 200, llmDelayMs: 1000, runs: 1, configs: [{ workers: 1, concurrency: 1000 }] },
  micro: { runs: 1 },
  safePool: 30_000,
  durability: { runs: 1 },
  replies: { ...FULL.replies, users: 200, llmDelaysMs: [1000], runs: 1, idleS: 1, auto: { ...FULL.replies.auto, rates: [1000], durationS: 2, connections: 400, runs: 1 } },
  acks: { runs: 1 },
  capacity: { messages: 2000, workerCounts: [1, 2], concurrency: 50, runs: 1 },
};

/** Gateway environment common to every scenario (the timestamp window stays at its default of 300 s). */
export function gatewayEnv(redisUrl: string, port: number): Record<string, string> {
  return {
    WECHAT_TOKEN: IDENTITY.token,
    WECHAT_APP_ID: IDENTITY.appId,
    WECHAT_ENCODING_AES_KEY: IDENTITY.encodingAesKey,
    REDIS_URL: redisUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    METRICS_PORT: '0',
    LOG_LEVEL: 'warn',
  };
}

export function workerEnv(redisUrl: string, apiUrl: string, concurrency: number, llmUrl?: string): Record<string, string> {
  return {
    WECHAT_APP_ID: IDENTITY.appId,
    WECHAT_APP_SECRET: IDENTITY.appSecret,
    WECHAT_API_BASE_URL: apiUrl,
    REDIS_URL: redisUrl,
    WORKER_CONCURRENCY: String(concurrency),
    METRICS_PORT: '0',
    LOG_LEVEL: 'warn',
    ...(llmUrl === undefined ? {} : { LLM_BASE_URL: llmUrl, LLM_MODEL: 'fake-llm' }),
  };
}

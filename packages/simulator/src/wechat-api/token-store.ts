import { randomBytes } from 'node:crypto';

/** Which endpoint issued a token; the two families are isolated from each other (docs/wechat-protocol.md §8.2). */
export type TokenKind = 'token' | 'stable_token';

/** What using a token answers: 0, or the errcode an API call would return for it. */
export type TokenCheck = 0 | 40001 | 42001;

/** A freshly handed-out token and the `expires_in` to answer with. */
export interface IssuedToken {
  accessToken: string;
  expiresIn: number;
}

export interface TokenStoreOptions {
  /** Lifetime of a token, seconds (WeChat: 7200). */
  ttlSeconds: number;
  /** Clock, ms. */
  now: () => number;
}

export interface TokenStore {
  /** `GET /cgi-bin/token`: always a new token; earlier ones keep working for 5 minutes only (docs/wechat-protocol.md §8.1). */
  issueToken(): IssuedToken;
  /**
   * `POST /cgi-bin/stable_token` (docs/wechat-protocol.md §8.2). Normal mode hands out the current token while it has more
   * than 5 minutes left, then renews it (the old one works until its own expiry). Force refresh
   * revokes the current token and issues a new one — unless the last force refresh was < 30 s ago,
   * in which case the current token is returned unchanged. More than 20 force refreshes within
   * 24 h answer 45009 (the doc gives the limit, not the code).
   */
  issueStableToken(forceRefresh: boolean): IssuedToken | { errcode: 45009 };
  /** Whether an API call made with `accessToken` goes through. Unknown tokens are 40001. */
  check(accessToken: string): TokenCheck;
  /** Every token issued so far answers 40001 from now on. */
  invalidateAll(): void;
  /** Every token issued so far answers 42001 from now on. */
  expireAll(): void;
}

/** The 5-minute overlap of docs/wechat-protocol.md §8.1/§8.2. */
const GRACE_MS = 5 * 60_000;
const FORCE_REFRESH_SPACING_MS = 30_000;
const FORCE_REFRESH_PER_DAY = 20;
const DAY_MS = 24 * 60 * 60_000;

interface TokenRecord {
  kind: TokenKind;
  expiresAt: number;
  /** Superseded by a newer token: works until this instant, then 40001. */
  supersededUntil?: number;
  /** Set by `invalidateAll` / a stable force refresh / `expireAll`: the code it answers from now on. */
  dead?: 40001 | 42001;
}

/** Real tokens are 130–160 characters of [A-Za-z0-9_-]; 128 base64url characters look the part. */
function createTokenString(): string {
  return randomBytes(96).toString('base64url');
}

/** Tokens of one app, both families, with WeChat's rotation and overlap rules. */
export function createTokenStore(options: TokenStoreOptions): TokenStore {
  const { now } = options;
  const ttlMs = options.ttlSeconds * 1000;
  const tokens = new Map<string, TokenRecord>();
  let currentStable: string | undefined;
  const forceRefreshes: number[] = [];

  function add(kind: TokenKind, at: number): string {
    const token = createTokenString();
    tokens.set(token, { kind, expiresAt: at + ttlMs });
    return token;
  }

  function check(accessToken: string): TokenCheck {
    const record = tokens.get(accessToken);
    if (record === undefined) return 40001;
    if (record.dead !== undefined) return record.dead;
    const at = now();
    const { supersededUntil, expiresAt } = record;
    // Whichever deadline came first decides the code.
    if (supersededUntil !== undefined && at >= supersededUntil && supersededUntil < expiresAt) return 40001;
    if (at >= expiresAt) return 42001;
    return 0;
  }

  function issueToken(): IssuedToken {
    const at = now();
    for (const record of tokens.values()) {
      if (record.kind === 'token' && record.supersededUntil === undefined) record.supersededUntil = at + GRACE_MS;
    }
    return { accessToken: add('token', at), expiresIn: options.ttlSeconds };
  }

  function stableAnswer(token: string, at: number): IssuedToken {
    const record = tokens.get(token);
    const expiresAt = record?.expiresAt ?? at;
    return { accessToken: token, expiresIn: Math.max(0, Math.floor((expiresAt - at) / 1000)) };
  }

  function issueStableToken(forceRefresh: boolean): IssuedToken | { errcode: 45009 } {
    const at = now();
    const current = currentStable;
    const usable = current !== undefined && check(current) === 0;
    if (forceRefresh) {
      while (forceRefreshes.length > 0 && (forceRefreshes[0] ?? at) <= at - DAY_MS) forceRefreshes.shift();
      const last = forceRefreshes.at(-1);
      const tooSoon = last !== undefined && at - last < FORCE_REFRESH_SPACING_MS;
      if (usable && tooSoon) return stableAnswer(current, at);
      if (forceRefreshes.length >= FORCE_REFRESH_PER_DAY) return { errcode: 45009 };
      forceRefreshes.push(at);
      const previous = current === undefined ? undefined : tokens.get(current);
      if (previous !== undefined && previous.dead === undefined) previous.dead = 40001;
      currentStable = add('stable_token', at);
      return stableAnswer(currentStable, at);
    }
    if (usable) {
      const record = tokens.get(current);
      if (record !== undefined && record.expiresAt - at > GRACE_MS) return stableAnswer(current, at);
    }
    // Renewal: the old token, if still alive, keeps working until its own expiry (≤ 5 minutes).
    currentStable = add('stable_token', at);
    return stableAnswer(currentStable, at);
  }

  function markAll(code: 40001 | 42001): void {
    for (const record of tokens.values()) record.dead = code;
  }

  return {
    issueToken,
    issueStableToken,
    check,
    invalidateAll: () => markAll(40001),
    expireAll: () => markAll(42001),
  };
}

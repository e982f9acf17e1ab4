import { createHash } from 'node:crypto';

/** A real OpenID: 28 characters of base64url, starting with `o`. */
const OPENID_RE = /^o[A-Za-z0-9_-]{27}$/;

/**
 * The OpenID a simulated user name stands for: the name itself when it already is an OpenID,
 * else `o` + 27 characters of base64url from a hash of the account and the name — stable across
 * runs (a worker's per-user state survives a simulator restart) and shaped like a real one.
 */
export function openidFor(account: string, user: string): string {
  if (OPENID_RE.test(user)) return user;
  return `o${createHash('sha256').update(`${account}\n${user}`).digest('base64url').slice(0, 27)}`;
}

/** Names of the simulated users by OpenID, so deliveries to an OpenID show under the user's name. */
export interface UserDirectory {
  /** Registers `user` and returns its OpenID. */
  openidOf(user: string): string;
  /** The name registered for `openid`, or the OpenID itself for a user never seen. */
  nameOf(openid: string): string;
}

export function createUserDirectory(account: string): UserDirectory {
  const names = new Map<string, string>();
  return {
    openidOf(user) {
      const openid = openidFor(account, user);
      names.set(openid, user);
      return openid;
    },
    nameOf: (openid) => names.get(openid) ?? openid,
  };
}

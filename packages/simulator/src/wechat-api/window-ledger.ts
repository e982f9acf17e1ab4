/**
 * What opened a user's customer-service window (docs/wechat-protocol.md §9.3): a message the user sent, or an event
 * (follow, custom-menu click, QR scan).
 */
export type InteractionTrigger = 'message' | 'event';

/** A user's current allowance. */
export interface SendWindow {
  trigger: InteractionTrigger;
  /** Sends left in this window. */
  remaining: number;
  /** First instant (ms) at which sends answer 45015. */
  expiresAt: number;
  /** Last time the user or the account "exchanged a message" (trigger or accepted send), ms. */
  lastExchangeAt: number;
}

export interface WindowLedger {
  /** A user action opens or refreshes the window (docs/wechat-protocol.md §9.3). */
  interact(openid: string, trigger: InteractionTrigger, at: number): void;
  /** Takes one send from the user's allowance: 0, 45015 (no/closed window) or 45047 (used up). */
  consume(openid: string, at: number): 0 | 45015 | 45047;
  /** The user's window, if one was ever opened (it may have expired). */
  get(openid: string): Readonly<SendWindow> | undefined;
  clear(): void;
}

/** docs/wechat-protocol.md §9.3: a message grants 5 sends for 48 hours; follow, menu click and scan grant 3 for 1 minute. */
const GRANTS: Readonly<Record<InteractionTrigger, { count: number; validMs: number }>> = {
  message: { count: 5, validMs: 48 * 60 * 60_000 },
  event: { count: 3, validMs: 60_000 },
};

/**
 * The 48-hour rule. Quota is not cumulative: a new trigger resets the remaining count to the
 * larger of what is left and the trigger's grant, and the expiry to the later of the two — the
 * reference's "resets the remaining count to the maximum and the window to the longest validity"
 * [UNCERTAIN for Official Accounts]. So an event during an open message window never shortens it,
 * and a message always restores 5 sends / 48 h.
 */
export function createWindowLedger(): WindowLedger {
  const windows = new Map<string, SendWindow>();

  return {
    interact(openid, trigger, at) {
      const grant = GRANTS[trigger];
      const fresh: SendWindow = { trigger, remaining: grant.count, expiresAt: at + grant.validMs, lastExchangeAt: at };
      const open = windows.get(openid);
      if (open === undefined || at >= open.expiresAt) {
        windows.set(openid, fresh);
        return;
      }
      windows.set(openid, {
        trigger: fresh.expiresAt >= open.expiresAt ? trigger : open.trigger,
        remaining: Math.max(open.remaining, fresh.remaining),
        expiresAt: Math.max(open.expiresAt, fresh.expiresAt),
        lastExchangeAt: at,
      });
    },
    consume(openid, at) {
      const window = windows.get(openid);
      if (window === undefined || at >= window.expiresAt) return 45015;
      if (window.remaining <= 0) return 45047;
      window.remaining -= 1;
      window.lastExchangeAt = at;
      return 0;
    },
    get: (openid) => windows.get(openid),
    clear: () => windows.clear(),
  };
}

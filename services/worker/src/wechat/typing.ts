import type { WechatApi } from './api.js';

/** A running typing indicator. */
export interface TypingIndicator {
  /** Stops refreshing it; `cancel` also clears it on the user's screen (the reply failed). */
  stop(opts: { cancel: boolean }): void;
}

/**
 * Shows "typing…" while a slow handler runs (docs/wechat-protocol.md §9.2). The state lasts 15 s, so
 * it is re-sent every `intervalMs` (default 12 s) until the reply goes out — a sent message
 * clears it by itself — or cancelled when the reply failed. Errors are ignored: it is cosmetic.
 */
export function startTyping(api: WechatApi, openid: string, intervalMs = 12_000): TypingIndicator {
  void api.typing(openid, 'Typing');
  const timer = setInterval(() => void api.typing(openid, 'Typing'), intervalMs);
  timer.unref();
  let stopped = false;
  return {
    stop({ cancel }) {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (cancel) void api.typing(openid, 'CancelTyping');
    },
  };
}

/** "typing…" shown on demand: `show` starts it once; `stop` is a no-op when it was never shown. */
export function typingOnDemand(api: WechatApi, openid: string, intervalMs?: number): { show(): void } & TypingIndicator {
  let indicator: TypingIndicator | undefined;
  return {
    show() {
      indicator ??= startTyping(api, openid, intervalMs);
    },
    stop(opts) {
      indicator?.stop(opts);
    },
  };
}

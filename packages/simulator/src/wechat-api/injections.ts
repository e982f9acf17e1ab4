/** The API paths the fake answers and a test can inject faults into. */
export type WechatApiPath =
  | '/cgi-bin/token'
  | '/cgi-bin/stable_token'
  | '/cgi-bin/message/custom/send'
  | '/cgi-bin/message/custom/typing'
  | '/cgi-bin/media/upload';

/** A fault for the next matching calls. */
export interface InjectionRule {
  path: WechatApiPath;
  /** Answer this errcode instead of doing the work (e.g. -1, 45009, 45011, 40164, 48001). */
  errcode?: number;
  /** Wait this long before answering (the call then proceeds, unless errcode/httpStatus say otherwise). */
  delayMs?: number;
  /** How many calls this rule applies to; default 1, `Infinity` for every call from now on. */
  times?: number;
  /**
   * Answer with this HTTP status. With `errcode`, the body is that errcode's JSON; without, an HTML
   * page like a gateway's (what a 502 from a proxy really looks like).
   */
  httpStatus?: number;
  /**
   * Do the work for real (deliver, consume quota, issue the token), then answer the injected
   * errcode/status anyway: WeChat accepted the message but the answer was lost (docs/wechat-protocol.md §9.4 duplicates).
   */
  applyAnyway?: boolean;
}

/** One call's share of an injected rule. */
export type Injection = Omit<InjectionRule, 'times' | 'path'>;

export interface InjectionQueue {
  add(rule: InjectionRule): void;
  /** The first rule for `path` with calls left, spending one of them; FIFO across rules. */
  take(path: string): Injection | undefined;
  clear(): void;
}

export function createInjectionQueue(): InjectionQueue {
  const rules: { rule: InjectionRule; left: number }[] = [];
  return {
    add(rule) {
      const left = rule.times ?? 1;
      if (!(left > 0)) throw new RangeError(`inject: times must be > 0, got ${String(rule.times)}`);
      rules.push({ rule, left });
    },
    take(path) {
      const index = rules.findIndex((entry) => entry.rule.path === path);
      const entry = rules[index];
      if (entry === undefined) return undefined;
      entry.left -= 1;
      if (entry.left <= 0) rules.splice(index, 1);
      const { path: _path, times: _times, ...injection } = entry.rule;
      return injection;
    },
    clear: () => {
      rules.length = 0;
    },
  };
}

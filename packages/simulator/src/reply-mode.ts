/**
 * How the stack behind the gateway answers (the gateway's and worker's `REPLY_MODE`): the
 * simulator only shows it (chat page header, `GET /sim/config`); it plays WeChat the same way in
 * every mode.
 *
 * - `customer-service`: `success` at once, the answer through the customer-service API;
 * - `passive`: the answer in the HTTP reply within WeChat's three tries, else a placeholder and the
 *   answer on the user's next message (accounts without the customer-service API);
 * - `auto`: passive when the answer is ready within a short hold, else the customer-service API.
 */
// The same list as REPLY_MODE's entry in the config table (reply-mode.test.ts checks): kept here so
// `pnpm start` can read it before the workspace is built.
export const REPLY_MODES = ['customer-service', 'passive', 'auto'] as const;

export type ReplyMode = (typeof REPLY_MODES)[number];

export function isReplyMode(value: string): value is ReplyMode {
  return (REPLY_MODES as readonly string[]).includes(value);
}

import type { CallbackMode } from './callback-client.js';
import { REPLY_MODES, isReplyMode } from './reply-mode.js';
import type { SimulatorOptions } from './simulator-server.js';

/** The variables `sim serve` reads, with what to do when one is wrong. */
export const SIM_ENV_HELP: readonly string[] = [
  'SIM_GATEWAY_URL   the gateway callback URL (default http://127.0.0.1:3000/wx)',
  'WECHAT_TOKEN      the Token the gateway checks (required)',
  'WECHAT_APP_ID     the AppID (required)',
  'WECHAT_APP_SECRET the AppSecret workers fetch tokens with (required)',
  'WECHAT_ENCODING_AES_KEY  43 letters/digits; needed for compat and safe mode',
  'SIM_MODE          plain | compat | safe (default safe with a key, else plain)',
  'SIM_PORT / SIM_HOST      where the simulator listens (default 127.0.0.1:4000)',
  'SIM_PUBLIC_URL    the URL people open it at, when not the listen address (e.g. behind a published port)',
  'SIM_ACCOUNT       the gh_ id pushes are addressed to (default derived from the AppID)',
  'SIM_UNVERIFIED    true: play an account without the customer-service API (custom/send and typing answer 48001); default false',
  'REPLY_MODE        the stack\'s reply mode (customer-service | passive | auto), shown on the chat page',
];

const TRUE = ['true', '1', 'yes', 'on'];
const FALSE = ['false', '0', 'no', 'off'];

const MODES: readonly CallbackMode[] = ['plain', 'compat', 'safe'];

/** What `sim serve` runs: the simulator's options, and the URL to tell people. */
export interface ServeSettings extends SimulatorOptions {
  /** SIM_PUBLIC_URL, without a trailing slash. */
  readonly publicUrl?: string;
}

/**
 * The URL a person can open for a simulator listening at `listenUrl`: `publicUrl` when set, else
 * the listen URL, with a wildcard address (0.0.0.0, ::), which a browser cannot open, replaced
 * by loopback (127.0.0.1 for 0.0.0.0, localhost for ::, which also reaches an IPv4 listener).
 */
export function openableUrl(listenUrl: string, publicUrl?: string): string {
  if (publicUrl !== undefined) return publicUrl;
  const url = new URL(listenUrl);
  if (url.hostname === '0.0.0.0') url.hostname = '127.0.0.1';
  else if (url.hostname === '[::]') url.hostname = 'localhost';
  return url.origin;
}

/**
 * `startSimulator` options from the environment. Empty strings count as unset; every problem is
 * reported at once, each with a hint.
 *
 * @throws Error listing every bad or missing variable.
 */
export function loadSimulatorSettings(env: Readonly<Record<string, string | undefined>>): ServeSettings {
  const problems: string[] = [];
  const get = (name: string): string | undefined => (env[name] === '' ? undefined : env[name]);
  const required = (name: string, hint: string): string => {
    const value = get(name);
    if (value === undefined) problems.push(`${name} is not set: ${hint}`);
    return value ?? '';
  };
  const gatewayUrl = get('SIM_GATEWAY_URL') ?? 'http://127.0.0.1:3000/wx';
  if (!URL.canParse(gatewayUrl)) problems.push('SIM_GATEWAY_URL is not a URL: use e.g. http://127.0.0.1:3000/wx');
  const token = required('WECHAT_TOKEN', 'use the same Token as the gateway');
  const appId = required('WECHAT_APP_ID', 'use the same AppID as the gateway and the worker, e.g. wx1234567890abcdef');
  const appSecret = required('WECHAT_APP_SECRET', 'use the same AppSecret as the worker');
  const encodingAesKey = get('WECHAT_ENCODING_AES_KEY');
  if (encodingAesKey !== undefined && !/^[A-Za-z0-9]{43}$/.test(encodingAesKey)) {
    problems.push('WECHAT_ENCODING_AES_KEY must be exactly 43 characters of [A-Za-z0-9]');
  }
  const modeText = get('SIM_MODE') ?? (encodingAesKey === undefined ? 'plain' : 'safe');
  const mode = MODES.find((m) => m === modeText);
  if (mode === undefined) problems.push(`SIM_MODE must be plain, compat or safe (got ${JSON.stringify(modeText)})`);
  if (mode !== undefined && mode !== 'plain' && encodingAesKey === undefined) {
    problems.push(`SIM_MODE=${mode} needs WECHAT_ENCODING_AES_KEY (the gateway's key)`);
  }
  const portText = get('SIM_PORT') ?? '4000';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) problems.push(`SIM_PORT must be a port number 0–65535 (got ${JSON.stringify(portText)})`);
  const account = get('SIM_ACCOUNT');
  const publicUrl = get('SIM_PUBLIC_URL')?.replace(/\/+$/, '');
  if (publicUrl !== undefined && !/^https?:\/\/[^/]/.test(publicUrl)) problems.push(`SIM_PUBLIC_URL must be an http(s) URL, e.g. http://localhost:4000 (got ${JSON.stringify(publicUrl)})`);
  const unverifiedText = get('SIM_UNVERIFIED')?.toLowerCase() ?? 'false';
  const unverified = TRUE.includes(unverifiedText);
  if (!unverified && !FALSE.includes(unverifiedText)) problems.push(`SIM_UNVERIFIED must be true or false (got ${JSON.stringify(get('SIM_UNVERIFIED'))})`);
  const replyMode = get('REPLY_MODE');
  if (replyMode !== undefined && !isReplyMode(replyMode)) problems.push(`REPLY_MODE must be ${REPLY_MODES.join(', ')} (got ${JSON.stringify(replyMode)})`);
  if (problems.length > 0) throw new Error(`simulator configuration:\n  ${problems.join('\n  ')}`);
  return Object.freeze({
    gatewayUrl,
    token,
    appId,
    appSecret,
    mode: mode ?? 'plain',
    port,
    host: get('SIM_HOST') ?? '127.0.0.1',
    unverified,
    ...(replyMode !== undefined && isReplyMode(replyMode) ? { replyMode } : {}),
    ...(encodingAesKey === undefined ? {} : { encodingAesKey }),
    ...(account === undefined ? {} : { account }),
    ...(publicUrl === undefined ? {} : { publicUrl }),
  });
}

/**
 * What any worker does, reduced to the calls: fetch an access token and POST custom/send or
 * custom/typing to the (fake) WeChat API. A faithful stand-in for the real worker in tests of the
 * simulator's page and CLI.
 */
export interface WorkerStandIn {
  send(body: Record<string, unknown>): Promise<{ errcode: number }>;
  typing(touser: string, command: 'Typing' | 'CancelTyping'): Promise<{ errcode: number }>;
}

export function createWorkerStandIn(apiUrl: string, app: { appId: string; appSecret: string }): WorkerStandIn {
  let token: string | undefined;
  const accessToken = async (): Promise<string> => {
    if (token !== undefined) return token;
    const q = new URLSearchParams({ grant_type: 'client_credential', appid: app.appId, secret: app.appSecret });
    const json = (await (await fetch(`${apiUrl}/cgi-bin/token?${q.toString()}`)).json()) as { access_token?: string };
    if (json.access_token === undefined) throw new Error(`no access token: ${JSON.stringify(json)}`);
    token = json.access_token;
    return token;
  };
  const post = async (path: string, body: unknown): Promise<{ errcode: number }> => {
    const res = await fetch(`${apiUrl}${path}?access_token=${await accessToken()}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return (await res.json()) as { errcode: number };
  };
  return {
    send: (body) => post('/cgi-bin/message/custom/send', body),
    typing: (touser, command) => post('/cgi-bin/message/custom/typing', { touser, command }),
  };
}

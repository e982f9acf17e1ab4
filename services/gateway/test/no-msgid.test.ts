import { describe, expect, it } from 'vitest';
import { jobIdFor, parseInboundMessage, type InboundJobPayload } from '@wxrelay/shared';
import { GH_ID, OPENID, plainRequest, textXml, useGateway, type GatewayHarness, type SignedRequest } from './support.js';

async function post(gw: GatewayHarness, req: SignedRequest) {
  return gw.app.inject({ method: 'POST', url: req.url, payload: req.payload, headers: { 'content-type': 'text/xml' } });
}

async function jobCount(gw: GatewayHarness): Promise<number> {
  const counts = await gw.app.inboundQueue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

const WARNING = 'push without MsgId accepted; deduplicated by sender, CreateTime and MsgType';

function withoutMsgId(xml: string): string {
  const stripped = xml.replace(/<MsgId>\d+<\/MsgId>\n?/, '');
  if (stripped === xml) throw new Error('no MsgId to strip');
  return stripped;
}

function imageXml(createTime: number): string {
  return [
    '<xml>',
    `<ToUserName><![CDATA[${GH_ID}]]></ToUserName>`,
    `<FromUserName><![CDATA[${OPENID}]]></FromUserName>`,
    `<CreateTime>${createTime}</CreateTime>`,
    '<MsgType><![CDATA[image]]></MsgType>',
    '<PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl>',
    '</xml>',
  ].join('\n');
}

describe('POST /wx: pushes without MsgId (or other non-essential fields)', () => {
  const gw = useGateway();

  it('accepts a text without MsgId, queues it once whatever the retries, and logs one warning without the openid', async () => {
    // A fixed CreateTime of its own, so no other test's text from this sender shares the key.
    const xml = withoutMsgId(textXml({ content: 'no id', createTime: Math.floor(Date.now() / 1000) - 7 }));
    const message = parseInboundMessage(xml);
    expect('msgId' in message).toBe(false);
    const jobId = jobIdFor(message);
    expect(jobId).toMatch(/^msg-[0-9a-f]{40}$/);

    const before = await jobCount(gw);
    const logsBefore = gw.logs.lines.length;
    const first = await post(gw, plainRequest(xml));
    expect(first.statusCode).toBe(200);
    expect(first.body).toBe('success');
    // WeChat's retries: same body, fresh signature.
    const retries = await Promise.all([post(gw, plainRequest(xml)), post(gw, plainRequest(xml))]);
    expect(retries.map((r) => r.body)).toEqual(['success', 'success']);
    expect(await jobCount(gw)).toBe(before + 1);

    const job = await gw.app.inboundQueue.getJob(jobId);
    const data = job?.data as InboundJobPayload | undefined;
    expect(data?.message).toMatchObject({ kind: 'text', content: 'no id' });
    expect(data?.message).not.toHaveProperty('msgId');
    expect(data?.dedupKey).toBe(`${OPENID}|${message.createTime}|text`);

    const added = gw.logs.lines.slice(logsBefore);
    const warnings = added.map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r['msg'] === WARNING);
    expect(warnings.map((w) => w['outcome'])).toEqual(['queued', 'duplicate', 'duplicate']);
    expect(warnings[0]).toMatchObject({ level: 40, msgType: 'text', jobId });
    for (const line of added) expect(line).not.toContain(OPENID);
  });

  it('does not warn about a text that has its MsgId', async () => {
    const logsBefore = gw.logs.lines.length;
    expect((await post(gw, plainRequest(textXml()))).body).toBe('success');
    expect(gw.logs.lines.slice(logsBefore).join('\n')).not.toContain(WARNING);
  });

  it('accepts an image without MediaId (and without MsgId)', async () => {
    const xml = imageXml(Math.floor(Date.now() / 1000) - 11);
    const before = await jobCount(gw);
    const res = await post(gw, plainRequest(xml));
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe('success');
    expect(await jobCount(gw)).toBe(before + 1);
    const job = await gw.app.inboundQueue.getJob(jobIdFor(parseInboundMessage(xml)));
    const data = job?.data as InboundJobPayload | undefined;
    expect(data?.message).toEqual({ kind: 'image', toUserName: GH_ID, fromUserName: OPENID, createTime: parseInboundMessage(xml).createTime, picUrl: 'http://mmbiz.qpic.cn/x' });
  });

  it('keeps a text and an image of one sender in the same second apart', async () => {
    const createTime = Math.floor(Date.now() / 1000) - 13;
    const before = await jobCount(gw);
    await post(gw, plainRequest(withoutMsgId(textXml({ createTime }))));
    await post(gw, plainRequest(imageXml(createTime)));
    expect(await jobCount(gw)).toBe(before + 2);
  });
});

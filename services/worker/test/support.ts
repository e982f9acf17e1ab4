import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createLogger, DEFAULT_JOB_OPTIONS, INBOUND_QUEUE, JOB_NAMES, loadWorkerConfig, type InboundJobPayload, type Logger, type WorkerConfig } from '@wxrelay/shared';
import { captureNdjson, waitFor } from '@wxrelay/testkit';

/** A logger whose NDJSON lines the test can read back (logs are tested as data). */
export function captureLogger(level = 'debug'): { log: Logger; lines: () => Record<string, unknown>[]; text: () => string } {
  const captured = captureNdjson();
  return { log: createLogger({ name: 'worker-test', level, destination: captured.destination }), text: captured.text, lines: captured.lines };
}

/** A worker's configuration as production reads it, from environment variables (`env` on top of the required ones). */
export function workerConfig(env: Record<string, string | undefined>): WorkerConfig {
  return loadWorkerConfig({ METRICS_PORT: '0', ...env });
}

export type Message = InboundJobPayload['message'];

let seq = 0;
/** A unique MsgId-like string (all digits, as WeChat's). */
export function nextMsgId(): string {
  seq += 1;
  return `${Date.now()}${String(seq).padStart(4, '0')}`;
}

export function textMessage(openid: string, content: string, msgId = nextMsgId()): Message {
  return { kind: 'text', toUserName: 'gh_test', fromUserName: openid, createTime: Math.floor(Date.now() / 1000), msgId, content };
}

/** Enqueues like the gateway does: the v1 payload, default options, a `msg-` job id. */
export async function enqueue(queue: Queue, message: Message): Promise<string> {
  const dedupKey = 'msgId' in message && typeof message.msgId === 'string' ? message.msgId : `${message.fromUserName}|${message.createTime}|${nextMsgId()}`;
  const payload: InboundJobPayload = { v: 1, dedupKey, mode: 'plain', receivedAt: Date.now(), message };
  const jobId = `msg-${dedupKey.replace(/[|:]/g, '-')}`;
  await queue.add(JOB_NAMES.inbound, payload, { ...DEFAULT_JOB_OPTIONS, jobId });
  return jobId;
}

export function producer(url: string, prefix: string): { queue: Queue; connection: Redis } {
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined);
  const queue = new Queue(INBOUND_QUEUE, { connection, prefix });
  queue.on('error', () => undefined);
  return { queue, connection };
}

/** Waits until the job is completed or failed and returns that state with the job. */
export async function settled(queue: Queue, jobId: string, timeoutMs = 30_000) {
  let state = '';
  await waitFor(async () => {
    state = await queue.getJobState(jobId);
    return state === 'completed' || state === 'failed';
  }, timeoutMs, `job ${jobId} to settle`);
  const job = await queue.getJob(jobId);
  return { state, job: job! };
}

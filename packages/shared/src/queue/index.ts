/**
 * `@wxrelay/shared/queue`: the one door to BullMQ. Everything that knows how BullMQ stores a queue
 * comes through here:
 *
 * - the queue contract (contract.ts, and shards.ts: QUEUE_SHARDS's queues and a user's shard): names, payload schema, job options, retention, the event
 *   stream cap, the dedup TTL, and {@link toInboundJob}: the job for an accepted message;
 * - the producer (producer.ts): batching, BullMQ's add script run once per job in one command, and
 *   the `Queue.addBulk` fallback; with REDIS_ACK_REPLICAS, the replicas' confirmation (replicas.ts);
 *   the `Queue.addBulk` fallback; one per shard, a message routed by its openid (sharded-producer.ts);
 * - the per-user order's reading of BullMQ's structures (turns.ts): the turns Lua and its keys;
 * - the workers' progress writes, made only while they hold the job's lock (job-data.ts);
 * - the workers' per-job steps fused into one script each (job-scripts.ts: turn + quota + progress
 *   + BullMQ's promote), and the turn's release sent along with BullMQ's completion (completion.ts);
 * - the passive answers: recorded by the workers, claimed by the gateways, the inbox (answers.ts);
 * - BullMQ's internals we rely on, and the one startup check of them (bullmq.ts).
 *
 * Loads bullmq and ioredis. The contract alone (no BullMQ) is also exported by the package root.
 *
 * @module
 */
export * from './contract.js';
export * from './shards.js';
export {
  ADD_STANDARD_JOB_KEYS,
  BULLMQ_VERSION,
  PROMOTE_KEYS,
  DEDUP_OPTION,
  KNOWN_SCRIPTS,
  assertBullmqForTurns,
  lockKey,
  checkBullmqInternals,
  problemsFor,
  queueKeys,
  queueKeysAt,
  type BullmqCheck,
  type BullmqProblem,
  type BullmqReliant,
  type QueueKeyNames,
} from './bullmq.js';
export {
  MAX_BATCH,
  createInboundProducer,
  createQueueAdder,
  loadAddStandardJob,
  packRawStrings,
  type BulkAddOptions,
  type BulkAdder,
  type BulkJob,
  type InboundProducer,
  type InboundProducerOptions,
  type ProducerPath,
  type QueueAdder,
} from './producer.js';
export { createReplicaWaiter, keySlot, type ReplicaWaiter, type WriteLink } from './replicas.js';
export { createShardedProducer, type Placement, type ShardedProducer, type ShardedProducerOptions } from './sharded-producer.js';
export { createJobDataWriter, type JobDataWriter } from './job-data.js';
export { TURNS_TTL_MS, createTurnsScripts, keyScope, turnKeys, type TakeAnswer, type TurnKeys, type TurnsScripts } from './turns.js';
export {
  LOCK_LOST,
  createJobScripts,
  jobScriptKeys,
  type FinishAnswer,
  type FinishRequest,
  type JobScriptKeys,
  type JobScripts,
  type JobScriptsOptions,
  type LedgerGrantArgs,
  type PlanRequest,
  type StartAnswer,
  type StartRequest,
} from './job-scripts.js';
export { createCompletionRides, type CompletionRides } from './completion.js';
export {
  DEFAULT_ANSWER_TTL_MS,
  answerKeys,
  createAnswerStore,
  type AnswerKeys,
  type AnswerOwner,
  type AnswerSource,
  type AnswerStore,
  type AnswerTimes,
  type ClaimOp,
  type ClaimResult,
  type FetchResult,
  type RecordResult,
} from './answers.js';

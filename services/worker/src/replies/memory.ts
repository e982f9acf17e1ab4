import type { RedisClient } from '@wxrelay/shared/redis';
import type { ChatMessage } from './llm.js';

/** A short per-user conversation memory for the chatbot. */
export interface ConversationMemory {
  history(openid: string): Promise<ChatMessage[]>;
  /** Appends one exchange; keeps the last `maxTurns` exchanges. */
  append(openid: string, user: string, assistant: string): Promise<void>;
}

export interface ConversationMemoryDeps {
  readonly redis: RedisClient;
  readonly appId: string;
  /** Exchanges kept (default 6). */
  readonly maxTurns?: number;
  /** Forgotten after this much silence (default 1 h). */
  readonly ttlSec?: number;
}

/** The conversation's key (its one MULTI touches only it). */
export function memoryKey(appId: string, openid: string): string {
  return `wx:chat:${appId}:${openid}`;
}

/** Redis list `wx:chat:<appId>:<openid>` of JSON messages, trimmed and expiring. */
export function createConversationMemory(deps: ConversationMemoryDeps): ConversationMemory {
  const maxTurns = deps.maxTurns ?? 6;
  const ttlSec = deps.ttlSec ?? 3600;
  const key = (openid: string) => memoryKey(deps.appId, openid);
  return {
    async history(openid) {
      const items = await deps.redis.lrange(key(openid), 0, -1);
      return items.flatMap((raw) => {
        try {
          const m = JSON.parse(raw) as ChatMessage;
          return (m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string' ? [m] : [];
        } catch {
          return [];
        }
      });
    },
    async append(openid, user, assistant) {
      const k = key(openid);
      await deps.redis
        .multi()
        .rpush(k, JSON.stringify({ role: 'user', content: user }), JSON.stringify({ role: 'assistant', content: assistant }))
        .ltrim(k, -2 * maxTurns, -1)
        .expire(k, ttlSec)
        .exec();
    },
  };
}

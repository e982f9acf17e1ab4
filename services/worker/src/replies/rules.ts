import { readFile } from 'node:fs/promises';
import Type, { type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { parse as parseYaml } from 'yaml';
import { WxError } from '@wxrelay/shared';
import { Reply, reply } from '../wechat/messages.js';
import { compileMatch, staticRoute, type Route } from './router.js';

const Pattern = Type.Union([Type.String(), Type.Object({ regex: Type.String({ minLength: 1 }), flags: Type.Optional(Type.String({ pattern: '^[dgimsuvy]*$' })) }, { additionalProperties: false })]);
const OneOrMany = Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })]);

/** One rule of `REPLY_RULES_FILE`: match → reply of any customer-service type. */
export const ReplyRule = Type.Object(
  {
    name: Type.Optional(Type.String()),
    match: Type.Object(
      { msgType: Type.Optional(OneOrMany), event: Type.Optional(OneOrMany), eventKey: Type.Optional(Pattern), content: Type.Optional(Pattern) },
      { additionalProperties: false, minProperties: 1 },
    ),
    /** A string is shorthand for a text reply; otherwise one WeChat body (docs/wechat-protocol.md §9.1) or several. */
    reply: Type.Union([Type.String({ minLength: 1 }), Reply, Type.Array(Reply, { minItems: 1 })]),
  },
  { additionalProperties: false },
);
export type ReplyRule = Static<typeof ReplyRule>;

export const ReplyRulesFile = Type.Union([Type.Array(ReplyRule), Type.Object({ rules: Type.Array(ReplyRule) }, { additionalProperties: false })]);

const validator = Compile(ReplyRulesFile);

/**
 * Parses and checks a rules document (JSON is YAML, so one parser reads both). Every problem is
 * reported at once, with where it is; a bad regex is a problem too.
 *
 * ```yaml
 * rules:
 *   - match: { msgType: text, content: 帮助 }
 *     reply: 回复“人工”转接客服
 *   - match: { event: CLICK, eventKey: MENU_NEWS }
 *     reply: { msgtype: mpnewsarticle, mpnewsarticle: { article_id: ARTICLE_ID } }
 * ```
 */
export function parseReplyRules(source: string, origin = 'reply rules'): Route[] {
  let doc: unknown;
  try {
    doc = parseYaml(source);
  } catch (err) {
    throw new WxError('WX_ERR_CONFIG', `${origin}: not valid JSON or YAML (${(err as Error).message})`);
  }
  if (!validator.Check(doc)) {
    const problems = validator.Errors(doc).slice(0, 10).map((e) => `  - ${e.instancePath || '/'}: ${e.message}`);
    throw new WxError('WX_ERR_CONFIG', `${origin}: invalid rules:\n${problems.join('\n')}`);
  }
  const rules = Array.isArray(doc) ? doc : doc.rules;
  return rules.map((rule, i) => {
    const name = rule.name ?? `rule ${i + 1}`;
    try {
      compileMatch(rule.match);
    } catch (err) {
      throw new WxError('WX_ERR_CONFIG', `${origin}: ${name}: ${(err as Error).message}`);
    }
    const replies = typeof rule.reply === 'string' ? [reply.text(rule.reply)] : Array.isArray(rule.reply) ? rule.reply : [rule.reply];
    return staticRoute(name, rule.match, replies);
  });
}

/** Reads `REPLY_RULES_FILE` (.json, .yaml or .yml). */
export async function loadReplyRules(path: string): Promise<Route[]> {
  let source: string;
  try {
    source = await readFile(path, 'utf8');
  } catch (err) {
    throw new WxError('WX_ERR_CONFIG', `REPLY_RULES_FILE ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return parseReplyRules(source, path);
}

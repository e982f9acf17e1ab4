import { isWxError } from '../errors.js';
import type { XmlObject, XmlValue } from '../protocol/messages.js';

/** Follows a vector path (`A.B.item[1].C`) through parseXml's output; arrays without an index yield their first entry. */
export function atPath(root: XmlObject, path: string): XmlValue | undefined {
  let node: XmlValue | undefined = root;
  for (const part of path.split('.')) {
    const match = /^(.+?)(?:\[(\d+)\])?$/.exec(part);
    const name = match?.[1] ?? part;
    const index = match?.[2];
    if (node === undefined || typeof node === 'string' || Array.isArray(node)) return undefined;
    node = (node as XmlObject)[name];
    if (Array.isArray(node)) node = (node as readonly XmlValue[])[Number(index ?? 0)];
  }
  return node;
}

/** The WxError code `fn` throws ('none' when it returns, 'foreign' for any other error). */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return isWxError(err) ? err.code : 'foreign';
  }
  return 'none';
}

/** The text of a flat XML element with its CDATA sections unwrapped and joined. */
export function fieldText(xml: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(xml);
  return match?.[1]?.replace(/<!\[CDATA\[([\s\S]*?)\]\]>/g, '$1');
}

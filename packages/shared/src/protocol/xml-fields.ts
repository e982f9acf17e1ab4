/**
 * Readers for the fields of a parsed XML document, shared by the inbound codec and the passive
 * reply parser. Internal to the protocol core (not exported from the package).
 *
 * @module
 */
import { WxError } from '../errors.js';
import type { XmlObject } from './messages.js';

export function xmlError(message: string): WxError {
  return new WxError('WX_ERR_XML', message);
}

/** A single text child, or undefined; `path` is the dotted name used in error messages. */
export function optText(obj: XmlObject, name: string, path: string = name): string | undefined {
  const value = obj[name];
  if (value === undefined || typeof value === 'string') return value;
  throw xmlError(`${path} must be a single text element`);
}

/** A single text child that must be there. */
export function reqText(obj: XmlObject, name: string, path: string = name): string {
  const value = optText(obj, name, path);
  if (value === undefined) throw xmlError(`${path} is missing`);
  return value;
}

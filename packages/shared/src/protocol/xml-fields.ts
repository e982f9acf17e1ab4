/**
 * Readers for the fields of a parsed XML document, shared by the inbound narrowing, the envelope
 * and the passive reply parser. Internal to the protocol core (not exported from the package).
 *
 * Each reader takes `path`, the dotted name used in error messages (`ScanCodeInfo.ScanType`), so a
 * refusal names the field and never echoes its content.
 *
 * @module
 */
import { WxError } from '../errors.js';
import type { XmlObject, XmlValue } from './messages.js';

const DIGITS_RE = /^\d{1,15}$/;
const DECIMAL_ID_RE = /^\d{1,20}$/;
const WHITESPACE_RE = /^[ \t\r\n]*$/;

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

/** An unsigned integer small enough to be exact as a number (Unix seconds, counts). */
export function reqUint(obj: XmlObject, name: string, path: string = name): number {
  const value = reqText(obj, name, path);
  if (!DIGITS_RE.test(value)) throw xmlError(`${path} must be an unsigned integer`);
  return Number(value);
}

/** A decimal id that may exceed 2^53 (`MsgId`, `MsgID`): kept as the string received. */
export function reqId(obj: XmlObject, name: string, path: string = name): string {
  const value = reqText(obj, name, path);
  if (!DECIMAL_ID_RE.test(value)) throw xmlError(`${path} must be a decimal id`);
  return value;
}

/** {@link reqId} when sent and not empty, else undefined (an empty element reads as absent). */
export function optId(obj: XmlObject, name: string, path: string = name): string | undefined {
  const value = optText(obj, name, path);
  if (value === undefined || value === '') return undefined;
  if (!DECIMAL_ID_RE.test(value)) throw xmlError(`${path} must be a decimal id`);
  return value;
}

function isObject(value: XmlValue | undefined): value is XmlObject {
  return typeof value === 'object' && !Array.isArray(value);
}

/** A child element holding elements; an empty element (`<A/>`) reads as `{}`. */
export function optObject(obj: XmlObject, name: string, path: string = name): XmlObject | undefined {
  const value = obj[name];
  if (value === undefined || isObject(value)) return value;
  if (typeof value === 'string' && WHITESPACE_RE.test(value)) return {};
  throw xmlError(`${path} must be a single element with children`);
}

export function reqObject(obj: XmlObject, name: string, path: string = name): XmlObject {
  const value = optObject(obj, name, path);
  if (value === undefined) throw xmlError(`${path} is missing`);
  return value;
}

/** Repeated elements as an array; absent → `[]`, one → `[it]`. */
function listOf(value: XmlValue | undefined): readonly XmlValue[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? (value as readonly XmlValue[]) : [value];
}

/** Repeated elements that hold elements; an empty one reads as `{}`. */
export function objectsOf(value: XmlValue | undefined, path: string): XmlObject[] {
  return listOf(value).map((entry) => {
    if (isObject(entry)) return entry;
    if (typeof entry === 'string' && WHITESPACE_RE.test(entry)) return {};
    throw xmlError(`${path} entries must be elements with children`);
  });
}

/** Repeated text elements. */
export function textsOf(value: XmlValue | undefined, path: string): string[] {
  return listOf(value).map((entry) => {
    if (typeof entry === 'string') return entry;
    throw xmlError(`${path} entries must be text`);
  });
}

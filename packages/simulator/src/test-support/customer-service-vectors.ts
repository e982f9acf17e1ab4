import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** `customer_service_bodies` of the protocol vectors: one example body per msgtype. */
export interface CustomerServiceVectors {
  bodies: Record<string, Record<string, unknown>>;
  typing: { bodies: Record<string, unknown>[] };
}

/** The one copy of the vectors, owned (and exported as a file) by the shared package. */
function vectorsPath(): string {
  return createRequire(import.meta.url).resolve('@wxrelay/shared/test-vectors/wechat-vectors.json');
}

/** Loads the customer-service example bodies; throws rather than letting tests skip. */
export function loadCustomerServiceVectors(): CustomerServiceVectors {
  const path = vectorsPath();
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as { customer_service_bodies?: CustomerServiceVectors };
  const vectors = parsed.customer_service_bodies;
  if (vectors === undefined || Object.keys(vectors.bodies).length === 0) {
    throw new Error(`${path}: customer_service_bodies.bodies is missing or empty`);
  }
  return vectors;
}

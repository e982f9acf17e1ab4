import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `customer_service_bodies` of vectors.json: one example body per msgtype. */
export interface CustomerServiceVectors {
  bodies: Record<string, Record<string, unknown>>;
  typing: { bodies: Record<string, unknown>[] };
}

/** `$WXRELAY_VECTORS`, else the first `shared/vectors.json` walking up from here (/work/main → /work/shared). */
function findVectorsPath(): string {
  const fromEnv = process.env['WXRELAY_VECTORS'];
  if (fromEnv !== undefined && fromEnv !== '') return resolve(fromEnv);
  for (let dir = dirname(fileURLToPath(import.meta.url)); dirname(dir) !== dir; dir = dirname(dir)) {
    const candidate = join(dir, 'shared', 'vectors.json');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('vectors.json not found: set WXRELAY_VECTORS or place the "shared" folder beside the repository clone');
}

/** Loads the customer-service example bodies; throws rather than letting tests skip. */
export function loadCustomerServiceVectors(): CustomerServiceVectors {
  const path = findVectorsPath();
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as { customer_service_bodies?: CustomerServiceVectors };
  const vectors = parsed.customer_service_bodies;
  if (vectors === undefined || Object.keys(vectors.bodies).length === 0) {
    throw new Error(`${path}: customer_service_bodies.bodies is missing or empty`);
  }
  return vectors;
}

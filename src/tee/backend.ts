import { z } from 'zod';

/** Bytes of caller data a report binds (SGX REPORTDATA and TDX REPORTDATA are both 64 bytes). */
export const REPORT_DATA_BYTES = 64;

/** What an enclave presents to its peer: who it is (measurement), on what platform, bound to reportData. */
export interface Evidence {
  backend: 'sim';
  /** Hex SHA-256 of the enclave's code (see computeMeasurement). */
  measurement: string;
  /** Hex, 64 bytes chosen by the caller (the handshake binds its transcript here). */
  reportData: string;
  /** Base64 SPKI DER of the platform's Ed25519 key. */
  platformKey: string;
  /** Base64 signature of the platform key over the other fields. */
  signature: string;
}

export interface VerifiedEvidence {
  backend: 'sim';
  measurement: string;
  platformKey: string;
  /** False when the backend gives no hardware protection (sim): policy may refuse such peers. */
  secure: boolean;
}

export interface TeeBackend {
  readonly kind: 'sim';
  readonly measurement: string;
  readonly secure: boolean;
  describe(): string;
  /** Evidence binding exactly REPORT_DATA_BYTES of caller data. */
  report(reportData: Buffer): Evidence;
  /** Checks shape, signature and that the evidence binds expectedReportData; throws AttestationError. */
  verify(evidence: unknown, expectedReportData: Buffer): VerifiedEvidence;
}

export class AttestationError extends Error {
  override name = 'AttestationError';
}

const lowerHex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`));
/** Canonical base64 only, so that one value has one spelling (transcripts hash the string). */
const canonicalBase64 = (maxChars: number) =>
  z
    .string()
    .max(maxChars)
    .regex(/^[A-Za-z0-9+/]+={0,2}$/)
    .refine((text) => Buffer.from(text, 'base64').toString('base64') === text, 'not canonical base64');

/** The wire shape of evidence, with bounds, before any signature is checked. */
export const evidenceSchema = z
  .object({
    backend: z.literal('sim'),
    measurement: lowerHex(32),
    reportData: lowerHex(REPORT_DATA_BYTES),
    platformKey: canonicalBase64(256),
    signature: canonicalBase64(256),
  })
  .strict();

/** Length-prefixed UTF-8 fields under a label: an unambiguous byte string for signing and hashing. */
export function encodeFields(label: string, fields: readonly string[]): Buffer {
  const parts = [Buffer.from(`${label}\0`, 'utf8')];
  for (const field of fields) {
    const bytes = Buffer.from(field, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32LE(bytes.length);
    parts.push(length, bytes);
  }
  return Buffer.concat(parts);
}

/** The canonical encoding of a whole piece of evidence, signature included (for transcripts). */
export function encodeEvidence(evidence: Evidence): Buffer {
  const { backend, measurement, reportData, platformKey, signature } = evidence;
  return encodeFields('constmig-evidence-v1', [backend, measurement, reportData, platformKey, signature]);
}

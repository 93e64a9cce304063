/**
 * The 'gramine' TEE backend: real SGX enclaves run by gramine-sgx, attested with DCAP quotes taken
 * through Gramine's /dev/attestation pseudo-files (write 64 bytes of report data to user_report_data,
 * then read quote). Verification binds the quote to the handshake and delegates the signature chain to
 * a pluggable QuoteVerifier.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { errorMessage } from '../util/errors.js';
import {
  AttestationError,
  checkReportData,
  type GramineEvidence,
  REPORT_DATA_BYTES,
  type TeeBackend,
  type VerifiedEvidence,
} from './backend.js';
import type { QuoteVerifier } from './quote-verifier.js';
import { canonicalBase64 } from './schema.js';
import { parseSgxQuote, type SgxQuote } from './sgx-quote.js';

/** What the gramine backend verified: measurement = MRENCLAVE, platform = the SGX identity. */
export type VerifiedSgx = VerifiedEvidence & {
  backend: 'gramine';
  platform: Extract<VerifiedEvidence['platform'], { kind: 'sgx' }>;
  secure: true;
};

/** DCAP quotes with a PCK chain are ~5 KiB; the bound keeps a hostile peer from making us parse more. */
export const MAX_QUOTE_BYTES = 16 * 1024;

export const gramineEvidenceSchema = z.strictObject({
  backend: z.literal('gramine'),
  quote: canonicalBase64(MAX_QUOTE_BYTES),
});

const DEFAULT_ATTESTATION_DIR = '/dev/attestation';

function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

function readAttestationType(dir: string): string {
  if (!isDirectory(dir)) throw new AttestationError(`${dir} not found: not running under gramine-sgx`);
  const file = path.join(dir, 'attestation_type');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new AttestationError(`cannot read ${file}: ${errorMessage(err)}`);
  }
}

/** One quote from Gramine, checked to bind the report data just written (a stale quote would not). */
function takeQuote(dir: string, reportData: Buffer): { raw: Buffer; quote: SgxQuote } {
  let raw: Buffer;
  try {
    writeFileSync(path.join(dir, 'user_report_data'), reportData);
    raw = readFileSync(path.join(dir, 'quote'));
  } catch (err) {
    throw new AttestationError(`cannot take a quote through ${dir}: ${errorMessage(err)}`);
  }
  if (raw.length > MAX_QUOTE_BYTES) {
    throw new AttestationError(`quote from ${dir} is ${raw.length} bytes, above ${MAX_QUOTE_BYTES}`);
  }
  const quote = parseSgxQuote(raw);
  if (!quote.body.reportData.equals(reportData)) {
    throw new AttestationError(`quote from ${dir} binds other report data than was written (stale quote)`);
  }
  return { raw, quote };
}

/**
 * An enclave's side of the backend. It is only as secure as the manifest that built it: the
 * measurement covers the files the manifest lists as trusted, and a debug enclave is not confidential.
 */
export class GramineTee implements TeeBackend {
  readonly kind = 'gramine' as const;
  readonly secure = true as const;
  /** SGX keeps the host kernel out: it must not be the one that decides a page has arrived. */
  readonly kernelInTcb = false;
  readonly measurement: string;
  readonly #dir: string;
  readonly #debug: boolean;

  private constructor(dir: string, identity: SgxQuote['body']) {
    this.#dir = dir;
    this.measurement = identity.mrEnclave;
    this.#debug = identity.debug;
  }

  /** Refuses outside gramine-sgx or without DCAP; learns MRENCLAVE from one quote over zero report data. */
  static open(opts: { attestationDir?: string } = {}): GramineTee {
    const dir = opts.attestationDir ?? DEFAULT_ATTESTATION_DIR;
    const type = readAttestationType(dir);
    if (type !== 'dcap') {
      throw new AttestationError(
        `attestation type is '${type}', the gramine backend needs 'dcap': ` +
          'set sgx.remote_attestation = "dcap" in the manifest and run under gramine-sgx',
      );
    }
    return new GramineTee(dir, takeQuote(dir, Buffer.alloc(REPORT_DATA_BYTES)).quote.body);
  }

  describe(): string {
    const debug = this.#debug ? ', DEBUG enclave: its memory is readable by the host' : '';
    return `gramine-sgx (SGX DCAP quotes, MRENCLAVE ${this.measurement}${debug})`;
  }

  report(reportData: Buffer): GramineEvidence {
    checkReportData(reportData);
    const { raw, quote } = takeQuote(this.#dir, reportData);
    if (quote.body.mrEnclave !== this.measurement) {
      throw new AttestationError(`quote from ${this.#dir} names another enclave (MRENCLAVE changed)`);
    }
    return { backend: 'gramine', quote: raw.toString('base64') };
  }
}

/** Shape → quote structure → binding to expectedReportData → signature chain (the verifier). */
export function verifyGramineEvidence(
  evidence: unknown,
  expectedReportData: Buffer,
  verifier: QuoteVerifier,
): VerifiedSgx {
  checkReportData(expectedReportData);
  const parsed = gramineEvidenceSchema.safeParse(evidence);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AttestationError(`malformed evidence: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
  }
  const raw = Buffer.from(parsed.data.quote, 'base64');
  const quote = parseSgxQuote(raw);
  if (!timingSafeEqual(quote.body.reportData, expectedReportData)) {
    throw new AttestationError('quote is bound to different report data (not this handshake)');
  }
  const { tcbStatus } = verifier.verify(quote, raw);
  const { mrEnclave, mrSigner, isvProdId, isvSvn, debug } = quote.body;
  return {
    backend: 'gramine',
    measurement: mrEnclave,
    platform: { kind: 'sgx', mrSigner, isvProdId, isvSvn, debug, verifier: verifier.name, tcbStatus },
    secure: true,
  };
}

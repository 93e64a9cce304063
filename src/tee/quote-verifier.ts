/**
 * Verification of an SGX quote's signature chain, behind one interface so that the real thing (Intel's
 * Quote Verification Library, run as an external command on `raw`) can be plugged in later. The two
 * verifiers here do NOT establish that a quote comes from genuine SGX hardware, say so in their names,
 * and refuse every quote unless the policy opts in explicitly.
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { AttestationError } from './backend.js';
import type { SgxQuote } from './sgx-quote.js';

export interface QuoteVerifier {
  /** Reported with every verified peer, so logs and policy see how much was checked. */
  readonly name: string;
  /**
   * Throws AttestationError unless the quote is accepted. Synchronous and given the exact bytes, so a
   * command-based verifier can hand `raw` to a tool (execFileSync) and map its verdict.
   */
  verify(quote: SgxQuote, raw: Buffer): { tcbStatus: string };
}

/** The TCB status of a quote whose platform TCB was not evaluated against Intel's collateral. */
export const TCB_NOT_EVALUATED = 'NotEvaluated';

/**
 * The explicit opt-in for verifiers that do not check the certification chain. It must be the literal
 * `true` (checked with ===), so a missing, misspelt or string-valued setting keeps them refusing.
 */
export interface UnverifiedQuotesOptIn {
  readonly insecureAcceptUnverifiedQuotes: true;
}

function refuseUnlessOptedIn(verifierName: string, optIn: UnverifiedQuotesOptIn | undefined): void {
  if (optIn?.insecureAcceptUnverifiedQuotes !== true) {
    throw new AttestationError(
      `quote verifier '${verifierName}' does not verify the quote's certification chain and refuses ` +
        'every quote unless the policy sets insecureAcceptUnverifiedQuotes: true (testing only)',
    );
  }
}

/**
 * Checks nothing beyond what the parser already did: anyone can forge a quote it accepts. For tests
 * and for bringing up a deployment before a real verifier is configured.
 */
export function untrustedQuoteVerifier(optIn?: UnverifiedQuotesOptIn): QuoteVerifier {
  const name = 'none';
  return {
    name,
    verify() {
      refuseUnlessOptedIn(name, optIn);
      return { tcbStatus: TCB_NOT_EVALUATED };
    },
  };
}

const ECDSA_PART_BYTES = 64;

/** The raw big-endian X||Y of a P-256 point as a public key; rejects points not on the curve. */
function importRawP256Key(xy: Buffer): KeyObject {
  try {
    return createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: xy.subarray(0, 32).toString('base64url'),
        y: xy.subarray(32, 64).toString('base64url'),
      },
      format: 'jwk',
    });
  } catch {
    throw new AttestationError('quote attestation key is not a valid P-256 public key');
  }
}

/**
 * Checks the ECDSA-P256 signature over header and report body with the attestation key carried in the
 * quote's own signature data (the first 64 + 64 bytes, identical in v3 and v4). That detects a quote
 * altered after signing, but NOT a forgery: it does not check that the key belongs to Intel's Quoting
 * Enclave (QE report and its signature), the PCK certificate chain to Intel's root, revocation, or the
 * platform's TCB level. Hence it demands the same opt-in as 'none'.
 */
export function attestationKeyOnlyVerifier(optIn?: UnverifiedQuotesOptIn): QuoteVerifier {
  const name = 'attestation-key-only';
  return {
    name,
    verify(quote) {
      refuseUnlessOptedIn(name, optIn);
      const signature = quote.signatureData.subarray(0, ECDSA_PART_BYTES);
      const key = importRawP256Key(quote.signatureData.subarray(ECDSA_PART_BYTES, 2 * ECDSA_PART_BYTES));
      if (!verify('sha256', quote.signedBytes, { key, dsaEncoding: 'ieee-p1363' }, signature)) {
        throw new AttestationError('quote signature does not verify under its attestation key');
      }
      return { tcbStatus: TCB_NOT_EVALUATED };
    },
  };
}

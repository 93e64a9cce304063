import { z } from 'zod';
import { encodeFields, type Evidence, type VerifiedEvidence } from './backend.js';
import { gramineEvidenceSchema, verifyGramineEvidence } from './gramine.js';
import type { QuoteVerifier } from './quote-verifier.js';
import { simEvidenceFields, simEvidenceSchema, verifySimEvidence } from './sim.js';

/** Evidence of any backend, as the handshake carries it; each backend's schema bounds its fields. */
export const evidenceSchema = z.discriminatedUnion('backend', [simEvidenceSchema, gramineEvidenceSchema]);

/** The canonical encoding of a whole piece of evidence, signature included (for transcripts). */
export function encodeEvidence(evidence: Evidence): Buffer {
  if (evidence.backend === 'gramine')
    return encodeFields('constmig-evidence-v1', ['gramine', evidence.quote]);
  return encodeFields('constmig-evidence-v1', [...simEvidenceFields(evidence), evidence.signature]);
}

/**
 * Checks a peer's evidence with the verifier of its own backend, whatever ours is: signatures, the
 * chain to its root (for SGX quotes: the pluggable quoteVerifier), and that it binds
 * expectedReportData. Throws AttestationError.
 */
export function verifyEvidence(
  evidence: Evidence,
  expectedReportData: Buffer,
  quoteVerifier: QuoteVerifier,
): VerifiedEvidence {
  switch (evidence.backend) {
    case 'sim':
      return verifySimEvidence(evidence, expectedReportData);
    case 'gramine':
      return verifyGramineEvidence(evidence, expectedReportData, quoteVerifier);
  }
}

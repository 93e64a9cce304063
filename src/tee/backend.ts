/** Bytes of caller data a report binds (SGX REPORTDATA and TDX REPORTDATA are both 64 bytes). */
export const REPORT_DATA_BYTES = 64;

/** What the sim backend presents: a report signed by a platform key that a sim root certified. */
export interface SimEvidence {
  backend: 'sim';
  /** Hex SHA-256 of the enclave's code (see computeMeasurement). */
  measurement: string;
  /** Hex, 64 bytes chosen by the caller (the handshake binds its transcript here). */
  reportData: string;
  /** Base64 SPKI DER of the platform's Ed25519 key (stands for the CPU). */
  platformKey: string;
  /** Base64 SPKI DER of the sim root's Ed25519 key (stands for the CPU vendor). */
  root: string;
  /** Base64 signature of the root over the platform key. */
  platformCert: string;
  /** Base64 signature of the platform key over every other field. */
  signature: string;
}

/** What the gramine backend presents: an SGX DCAP quote whose report data binds the handshake. */
export interface GramineEvidence {
  backend: 'gramine';
  /** Base64 of the raw quote read from /dev/attestation/quote. */
  quote: string;
}

export type Evidence = SimEvidence | GramineEvidence;
export type TeeKind = Evidence['backend'];

/** Who vouches for the peer's platform, as far as its evidence could be checked. */
export type PlatformIdentity =
  | { kind: 'sim'; root: string; platformKey: string }
  | {
      kind: 'sgx';
      mrSigner: string;
      isvProdId: number;
      isvSvn: number;
      debug: boolean;
      /** Which QuoteVerifier judged the quote's signature chain, and its verdict. */
      verifier: string;
      tcbStatus: string;
    };

/** Evidence whose signatures and report-data binding were checked; trusting it is the policy's call. */
export interface VerifiedEvidence {
  backend: TeeKind;
  measurement: string;
  platform: PlatformIdentity;
  /** False when the backend gives no hardware protection (sim). */
  secure: boolean;
}

export interface TeeBackend {
  readonly kind: TeeKind;
  readonly measurement: string;
  readonly secure: boolean;
  /**
   * Whether the kernel that runs this enclave process is inside the trust boundary, so that it may be
   * trusted to hold back an access to a missing page (the Fault Tracker relies on it).
   */
  readonly kernelInTcb: boolean;
  describe(): string;
  /** Evidence binding exactly REPORT_DATA_BYTES of caller data. */
  report(reportData: Buffer): Evidence;
}

export class AttestationError extends Error {
  override name = 'AttestationError';
}

export function checkReportData(reportData: Buffer): void {
  if (reportData.length !== REPORT_DATA_BYTES) {
    throw new AttestationError(`report data must be ${REPORT_DATA_BYTES} bytes, got ${reportData.length}`);
  }
}

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

import { type KeyObject, sign, timingSafeEqual, verify } from 'node:crypto';
import { z } from 'zod';
import {
  AttestationError,
  checkReportData,
  encodeFields,
  REPORT_DATA_BYTES,
  type SimEvidence,
  type TeeBackend,
  type VerifiedEvidence,
} from './backend.js';
import { canonicalBase64 } from './schema.js';
import {
  importEd25519PrivateKey,
  importEd25519PublicKey,
  platformCertPayload,
  spkiBase64,
} from './sim-root.js';

const MEASUREMENT_PATTERN = /^[0-9a-f]{64}$/;

const lowerHex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`));
/** Ed25519 SPKI keys are 44 bytes and signatures 64; the bound leaves room and nothing more. */
const KEY_OR_SIGNATURE_BYTES = 128;

/** The wire shape of sim evidence, with bounds, before any signature is checked. */
export const simEvidenceSchema = z.strictObject({
  backend: z.literal('sim'),
  measurement: lowerHex(32),
  reportData: lowerHex(REPORT_DATA_BYTES),
  platformKey: canonicalBase64(KEY_OR_SIGNATURE_BYTES),
  root: canonicalBase64(KEY_OR_SIGNATURE_BYTES),
  platformCert: canonicalBase64(KEY_OR_SIGNATURE_BYTES),
  signature: canonicalBase64(KEY_OR_SIGNATURE_BYTES),
});

/** Every field of sim evidence but the signature, in the one order that signing and hashing use. */
export function simEvidenceFields(evidence: Omit<SimEvidence, 'signature'>): string[] {
  const { backend, measurement, reportData, platformKey, root, platformCert } = evidence;
  return [backend, measurement, reportData, platformKey, root, platformCert];
}

/** What the platform key signs. */
function signedPayload(evidence: Omit<SimEvidence, 'signature'>): Buffer {
  return encodeFields('constmig-sim-report-v2', simEvidenceFields(evidence));
}

function checkPlatformCert(root: string, platformKey: string, platformCert: string): void {
  const rootKey = importEd25519PublicKey(root, 'sim root key');
  if (!verify(null, platformCertPayload(platformKey), rootKey, Buffer.from(platformCert, 'base64'))) {
    throw new AttestationError('platform certificate does not verify under the sim root it names');
  }
}

export interface SimTeeOptions {
  platformPrivateKeyPem: string;
  /** The sim root's certificate of this platform key (certifyPlatformKey). */
  platformCert: string;
  /** Base64 SPKI of the sim root that issued platformCert. */
  root: string;
  measurement: string;
}

/**
 * A software enclave for development and CI. It is NOT secure: the "platform key" that stands for the
 * CPU is an ordinary key in the host daemon's state directory, the enclave's memory is ordinary
 * process memory, and the measurement is computed by the very code it measures. Anyone with the host
 * can read the heap, and anyone with a platform key the root certified can forge evidence. It exists
 * so that the protocol (binding, verification, policy) is exercised exactly as with real hardware.
 */
export class SimTee implements TeeBackend {
  readonly kind = 'sim' as const;
  readonly secure = false;
  /** An ordinary process: its kernel can read and change all of it anyway. */
  readonly kernelInTcb = true;
  readonly #platformKey: KeyObject;
  readonly #identity: Pick<SimEvidence, 'platformKey' | 'root' | 'platformCert'>;

  private constructor(
    platformKey: KeyObject,
    identity: Pick<SimEvidence, 'platformKey' | 'root' | 'platformCert'>,
    readonly measurement: string,
  ) {
    this.#platformKey = platformKey;
    this.#identity = identity;
  }

  static create(opts: SimTeeOptions): SimTee {
    if (!MEASUREMENT_PATTERN.test(opts.measurement)) {
      throw new AttestationError('measurement must be 64 lowercase hex digits (a SHA-256)');
    }
    const key = importEd25519PrivateKey(opts.platformPrivateKeyPem, 'platform key');
    const platformKey = spkiBase64(key);
    // A host configured with a certificate for another key would only fail later, at the peer.
    checkPlatformCert(opts.root, platformKey, opts.platformCert);
    return new SimTee(
      key,
      { platformKey, root: opts.root, platformCert: opts.platformCert },
      opts.measurement,
    );
  }

  describe(): string {
    return 'sim (simulated enclave: NO hardware protection)';
  }

  report(reportData: Buffer): SimEvidence {
    checkReportData(reportData);
    const unsigned = {
      backend: this.kind,
      measurement: this.measurement,
      reportData: reportData.toString('hex'),
      ...this.#identity,
    };
    const signature = sign(null, signedPayload(unsigned), this.#platformKey).toString('base64');
    return { ...unsigned, signature };
  }
}

/**
 * Checks shape, the root's certificate of the platform key, the platform's signature and that the
 * evidence binds expectedReportData. Whether the root is trusted is the policy's decision.
 */
export function verifySimEvidence(evidence: unknown, expectedReportData: Buffer): VerifiedEvidence {
  checkReportData(expectedReportData);
  const parsed = simEvidenceSchema.safeParse(evidence);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AttestationError(`malformed evidence: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
  }
  const { signature, ...unsigned } = parsed.data;
  checkPlatformCert(unsigned.root, unsigned.platformKey, unsigned.platformCert);
  const platformKey = importEd25519PublicKey(unsigned.platformKey, 'evidence platform key');
  if (!verify(null, signedPayload(unsigned), platformKey, Buffer.from(signature, 'base64'))) {
    throw new AttestationError('evidence signature does not verify under its platform key');
  }
  if (!timingSafeEqual(Buffer.from(unsigned.reportData, 'hex'), expectedReportData)) {
    throw new AttestationError('evidence is bound to different report data (not this handshake)');
  }
  return {
    backend: 'sim',
    measurement: unsigned.measurement,
    platform: { kind: 'sim', root: unsigned.root, platformKey: unsigned.platformKey },
    secure: false,
  };
}

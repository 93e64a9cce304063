import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  timingSafeEqual,
  verify,
} from 'node:crypto';
import {
  AttestationError,
  type Evidence,
  encodeFields,
  evidenceSchema,
  REPORT_DATA_BYTES,
  type TeeBackend,
  type VerifiedEvidence,
} from './backend.js';

const MEASUREMENT_PATTERN = /^[0-9a-f]{64}$/;

/** A new Ed25519 platform key; the host daemon makes one per host and hands it to its enclaves. */
export function generatePlatformKey(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/** What the platform key signs: every field of the evidence but the signature. */
function signedPayload(evidence: Omit<Evidence, 'signature'>): Buffer {
  const { backend, measurement, reportData, platformKey } = evidence;
  return encodeFields('constmig-sim-report-v1', [backend, measurement, reportData, platformKey]);
}

function importPlatformPublicKey(spkiBase64: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spkiBase64, 'base64'), format: 'der', type: 'spki' });
  } catch {
    throw new AttestationError('evidence platform key is not a valid SPKI public key');
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new AttestationError(`evidence platform key is ${key.asymmetricKeyType}, expected ed25519`);
  }
  return key;
}

function checkReportData(reportData: Buffer): void {
  if (reportData.length !== REPORT_DATA_BYTES) {
    throw new AttestationError(`report data must be ${REPORT_DATA_BYTES} bytes, got ${reportData.length}`);
  }
}

/**
 * A software enclave for development and CI. It is NOT secure: the "platform key" that stands for the
 * CPU is an ordinary key in the host daemon's state directory, the enclave's memory is ordinary
 * process memory, and the measurement is computed by the very code it measures. Anyone with the host
 * can read the heap, and anyone with the platform key can forge evidence. It exists so that the
 * protocol (binding, verification, policy) is exercised exactly as with real hardware.
 */
export class SimTee implements TeeBackend {
  readonly kind = 'sim' as const;
  readonly secure = false;
  readonly #platformKey: KeyObject;
  readonly #platformKeySpki: string;

  private constructor(
    platformKey: KeyObject,
    readonly measurement: string,
  ) {
    this.#platformKey = platformKey;
    this.#platformKeySpki = createPublicKey(platformKey)
      .export({ format: 'der', type: 'spki' })
      .toString('base64');
  }

  static create(opts: { platformPrivateKeyPem: string; measurement: string }): SimTee {
    if (!MEASUREMENT_PATTERN.test(opts.measurement)) {
      throw new AttestationError('measurement must be 64 lowercase hex digits (a SHA-256)');
    }
    let key: KeyObject;
    try {
      key = createPrivateKey(opts.platformPrivateKeyPem);
    } catch {
      throw new AttestationError('platform private key is not a valid PEM private key');
    }
    if (key.asymmetricKeyType !== 'ed25519') {
      throw new AttestationError(`platform key is ${key.asymmetricKeyType}, expected ed25519`);
    }
    return new SimTee(key, opts.measurement);
  }

  describe(): string {
    return 'sim (simulated enclave: NO hardware protection)';
  }

  report(reportData: Buffer): Evidence {
    checkReportData(reportData);
    const unsigned = {
      backend: this.kind,
      measurement: this.measurement,
      reportData: reportData.toString('hex'),
      platformKey: this.#platformKeySpki,
    };
    const signature = sign(null, signedPayload(unsigned), this.#platformKey).toString('base64');
    return { ...unsigned, signature };
  }

  /**
   * Accepts any well-formed evidence signed by the platform key it names: which platform keys to
   * trust is policy, so the key is returned for the caller to decide (trust roots come later).
   */
  verify(evidence: unknown, expectedReportData: Buffer): VerifiedEvidence {
    checkReportData(expectedReportData);
    const parsed = evidenceSchema.safeParse(evidence);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new AttestationError(
        `malformed evidence: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`,
      );
    }
    const { signature, ...unsigned } = parsed.data;
    const publicKey = importPlatformPublicKey(unsigned.platformKey);
    if (!verify(null, signedPayload(unsigned), publicKey, Buffer.from(signature, 'base64'))) {
      throw new AttestationError('evidence signature does not verify under its platform key');
    }
    if (!timingSafeEqual(Buffer.from(unsigned.reportData, 'hex'), expectedReportData)) {
      throw new AttestationError('evidence is bound to different report data (not this handshake)');
    }
    return {
      backend: unsigned.backend,
      measurement: unsigned.measurement,
      platformKey: unsigned.platformKey,
      secure: false,
    };
  }
}

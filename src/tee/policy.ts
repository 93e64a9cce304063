import { createHash, verify } from 'node:crypto';
import fs from 'node:fs';
import { z } from 'zod';
import type { Role } from '../crypto/key-schedule.js';
import { UserError } from '../util/errors.js';
import { AttestationError, encodeFields, type VerifiedEvidence } from './backend.js';
import { attestationKeyOnlyVerifier, type QuoteVerifier, untrustedQuoteVerifier } from './quote-verifier.js';
import { canonicalBase64 } from './schema.js';
import { importEd25519PublicKey } from './sim-root.js';

/**
 * The attestation policy: which measurements may migrate to which, and which platforms are trusted.
 * Both enclaves apply it to their peer inside the handshake. Under real SGX the policy file is a
 * trusted (measured) file of the enclave, so the untrusted host cannot edit it; under sim nothing is
 * protected anyway.
 */

const measurement = z.string().regex(/^[0-9a-f]{64}$/, 'a measurement is 64 lowercase hex digits');
const ed25519Spki = canonicalBase64(128);

const upgrade = z.strictObject({
  from: measurement,
  to: measurement,
  /** Base64 Ed25519 signature by one of `imageSigners` over upgradePayload(from, to). */
  signature: canonicalBase64(128),
});

export const policySchema = z.strictObject({
  version: z.literal(1),
  measurements: z
    .strictObject({
      /** Source and destination run the same image (the usual case). */
      allowSame: z.boolean().default(true),
      /** Base64 SPKI Ed25519 keys of the image signers whose signed upgrades are honoured. */
      imageSigners: z.array(ed25519Spki).max(16).default([]),
      upgrades: z.array(upgrade).max(256).default([]),
    })
    .default({ allowSame: true, imageSigners: [], upgrades: [] }),
  platforms: z.strictObject({
    /** Simulated platforms certified by one of these sim roots (base64 SPKI). Absent: sim refused. */
    sim: z.strictObject({ roots: z.array(ed25519Spki).min(1).max(16) }).optional(),
    /** Real SGX enclaves (gramine backend). Absent: SGX peers refused. */
    sgx: z
      .strictObject({
        mrSigners: z.array(measurement).min(1).max(16),
        isvProdId: z.number().int().min(0).max(0xffff).optional(),
        minIsvSvn: z.number().int().min(0).max(0xffff).default(0),
        allowDebug: z.boolean().default(false),
        /**
         * Who checks a quote's signature chain. Neither built-in verifier proves genuine hardware
         * (docs/gramine.md), so each needs insecureAcceptUnverifiedQuotes: true to accept anything.
         */
        quoteVerifier: z.enum(['none', 'attestation-key-only']).default('attestation-key-only'),
        insecureAcceptUnverifiedQuotes: z.literal(true).optional(),
      })
      .optional(),
  }),
});
export type PolicyDocument = z.input<typeof policySchema>;
type Policy = z.output<typeof policySchema>;

export class PolicyError extends AttestationError {
  override name = 'PolicyError';
}

/** What an image signer signs to allow enclaves measured `from` to migrate into ones measured `to`. */
export function upgradePayload(from: string, to: string): Buffer {
  return encodeFields('constmig-upgrade-v1', [from, to]);
}

/** Short, stable name of a key for messages: the first 16 hex digits of SHA-256 over its SPKI. */
export function keyFingerprint(spki: string): string {
  return createHash('sha256').update(Buffer.from(spki, 'base64')).digest('hex').slice(0, 16);
}

function checkUpgradeSignatures(policy: Policy): void {
  const signers = policy.measurements.imageSigners.map((spki) => {
    try {
      return importEd25519PublicKey(spki, 'image signer');
    } catch {
      throw new PolicyError(`image signer ${keyFingerprint(spki)} is not an Ed25519 SPKI key`);
    }
  });
  policy.measurements.upgrades.forEach(({ from, to, signature }, index) => {
    const signed = signers.some((key) =>
      verify(null, upgradePayload(from, to), key, Buffer.from(signature, 'base64')),
    );
    if (!signed) {
      throw new PolicyError(
        `upgrade #${index} (${from.slice(0, 12)}… → ${to.slice(0, 12)}…) is not signed by an image signer`,
      );
    }
  });
}

export class AttestationPolicy {
  private constructor(readonly document: Policy) {}

  /** Validates a policy document; every mistake is one PolicyError naming the field. */
  static parse(json: unknown): AttestationPolicy {
    const parsed = policySchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new PolicyError(`invalid policy: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
    }
    checkUpgradeSignatures(parsed.data);
    return new AttestationPolicy(parsed.data);
  }

  static load(file: string): AttestationPolicy {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new UserError(`cannot read policy file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new UserError(`policy file ${file} is not JSON`);
    }
    try {
      return AttestationPolicy.parse(json);
    } catch (err) {
      throw new UserError(`policy file ${file}: ${(err as Error).message}`);
    }
  }

  /** Without a policy file: the same image only, on sim platforms of this host's own sim root. */
  static sameImageOnSimRoot(root: string): AttestationPolicy {
    return AttestationPolicy.parse({ version: 1, platforms: { sim: { roots: [root] } } });
  }

  /** The verifier of SGX quotes; without an sgx section it refuses every quote. */
  get quoteVerifier(): QuoteVerifier {
    const sgx = this.document.platforms.sgx;
    const optIn = sgx?.insecureAcceptUnverifiedQuotes
      ? { insecureAcceptUnverifiedQuotes: true as const }
      : undefined;
    return sgx?.quoteVerifier === 'none' ? untrustedQuoteVerifier(optIn) : attestationKeyOnlyVerifier(optIn);
  }

  /**
   * Refuses a peer whose platform is not trusted or whose measurement may not be paired with ours in
   * the direction of this migration. Throws PolicyError.
   */
  checkPeer(peer: VerifiedEvidence, ownMeasurement: string, peerRole: Role): void {
    this.checkPlatform(peer);
    const [from, to] =
      peerRole === 'source' ? [peer.measurement, ownMeasurement] : [ownMeasurement, peer.measurement];
    this.checkMeasurements(from, to);
  }

  private checkMeasurements(from: string, to: string): void {
    const { allowSame, upgrades } = this.document.measurements;
    if (from === to) {
      if (allowSame) return;
      throw new PolicyError('the policy does not allow migrating between enclaves of the same measurement');
    }
    if (upgrades.some((u) => u.from === from && u.to === to)) return;
    throw new PolicyError(
      `measurement ${to} may not receive from ${from}: they differ and no signed upgrade allows it`,
    );
  }

  private checkPlatform(peer: VerifiedEvidence): void {
    const { platform } = peer;
    const { sim, sgx } = this.document.platforms;
    if (platform.kind === 'sim') {
      if (!sim) throw new PolicyError('simulated (sim) platforms are not trusted by the policy');
      if (!sim.roots.includes(platform.root)) {
        throw new PolicyError(`sim root ${keyFingerprint(platform.root)} is not trusted by the policy`);
      }
      return;
    }
    if (!sgx) throw new PolicyError('SGX platforms are not trusted by the policy');
    if (!sgx.mrSigners.includes(platform.mrSigner)) {
      throw new PolicyError(`MRSIGNER ${platform.mrSigner} is not trusted by the policy`);
    }
    if (sgx.isvProdId !== undefined && platform.isvProdId !== sgx.isvProdId) {
      throw new PolicyError(`ISV product id ${platform.isvProdId} is not ${sgx.isvProdId}`);
    }
    if (platform.isvSvn < sgx.minIsvSvn) {
      throw new PolicyError(`ISV SVN ${platform.isvSvn} is below the policy minimum ${sgx.minIsvSvn}`);
    }
    if (platform.debug && !sgx.allowDebug)
      throw new PolicyError('debug enclaves are not trusted by the policy');
  }
}

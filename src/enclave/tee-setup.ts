import { GramineTee } from '../tee/gramine.js';
import type { TeeBackend } from '../tee/backend.js';
import { computeMeasurement } from '../tee/measurement.js';
import { AttestationPolicy } from '../tee/policy.js';
import { SimTee } from '../tee/sim.js';
import type { HostToEnclave } from './ipc.js';

type Init = Extract<HostToEnclave, { type: 'init' }>;

/**
 * Chooses the TEE backend and the attestation policy (the sim measurement hashes `bundleDir`; SGX
 * measures in hardware, so nothing is hashed there). Under gramine-sgx both come from the measured
 * manifest (CONSTMIG_TEE and CONSTMIG_ATTESTATION_POLICY are fixed there and the policy file is a
 * trusted file), never from the host; the sim backend takes its platform identity and policy from
 * the host, which is all a simulation can do.
 */
export function setUpTee(init: Init, bundleDir: string): { tee: TeeBackend; policy: AttestationPolicy } {
  if (process.env.CONSTMIG_TEE === 'gramine') {
    const policyFile = process.env.CONSTMIG_ATTESTATION_POLICY;
    if (!policyFile) throw new Error('CONSTMIG_ATTESTATION_POLICY is not set in the manifest');
    return { tee: GramineTee.open(), policy: AttestationPolicy.load(policyFile) };
  }
  const { platformPrivateKeyPem, platformCert, root } = init.tee;
  return {
    tee: SimTee.create({
      platformPrivateKeyPem,
      platformCert,
      root,
      measurement: computeMeasurement(bundleDir, process.version),
    }),
    policy: AttestationPolicy.parse(init.policy),
  };
}

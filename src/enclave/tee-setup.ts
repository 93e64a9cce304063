import { GramineTee } from '../tee/gramine.js';
import type { TeeBackend } from '../tee/backend.js';
import { computeMeasurement } from '../tee/measurement.js';
import { AttestationPolicy } from '../tee/policy.js';
import { SimTee } from '../tee/sim.js';
import type { HostToEnclave } from './ipc.js';

type Init = Extract<HostToEnclave, { type: 'init' }>;

/**
 * The sim backend's measurement of the code this process runs, taken as it starts: an enclave may wait
 * a long time for its host to say what to run (a host keeps a spare one ready), and the files are
 * hashed as close as possible to when they were loaded. Null under gramine-sgx, where the hardware
 * measures.
 */
export function measureAtStart(bundleDir: string): string | null {
  return process.env.CONSTMIG_TEE === 'gramine' ? null : computeMeasurement(bundleDir, process.version);
}

/**
 * Chooses the TEE backend and the attestation policy (the sim backend reports `simMeasurement`, from
 * measureAtStart). Under gramine-sgx both come from the measured manifest (CONSTMIG_TEE and
 * CONSTMIG_ATTESTATION_POLICY are fixed there and the policy file is a trusted file), never from the
 * host; the sim backend takes its platform identity and policy from the host, which is all a
 * simulation can do.
 */
export function setUpTee(
  init: Init,
  simMeasurement: string | null,
): { tee: TeeBackend; policy: AttestationPolicy } {
  if (process.env.CONSTMIG_TEE === 'gramine') {
    const policyFile = process.env.CONSTMIG_ATTESTATION_POLICY;
    if (!policyFile) throw new Error('CONSTMIG_ATTESTATION_POLICY is not set in the manifest');
    return { tee: GramineTee.open(), policy: AttestationPolicy.load(policyFile) };
  }
  if (simMeasurement === null) throw new Error('the sim backend needs the measurement taken at start');
  const { platformPrivateKeyPem, platformCert, root } = init.tee;
  return {
    tee: SimTee.create({
      platformPrivateKeyPem,
      platformCert,
      root,
      measurement: simMeasurement,
    }),
    policy: AttestationPolicy.parse(init.policy),
  };
}

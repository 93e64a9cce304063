import { z } from 'zod';
import type { MissCatcher } from '../heap/secure-heap.js';
import { uffdAvailability } from '../native/uffd.js';
import { TRACKER_KINDS, type TrackerKind } from './tracker.js';

/**
 * What an operator may ask for (`--tracker`): a tracker, or 'auto' (the Fault Tracker where
 * userfaultfd works, else the Access Tracker). 'none' is what a destination is prepared with when the
 * mode has no post-copy: every page arrives before the application runs, so nothing needs catching.
 */
export const TRACKER_REQUESTS = ['auto', 'fault', 'access'] as const;
export type TrackerRequest = (typeof TRACKER_REQUESTS)[number] | 'none';

/** The tracker a destination uses, and why: shown by the CLI and carried in the report. */
export const trackerChoice = z.strictObject({
  kind: z.enum(TRACKER_KINDS).nullable(),
  reason: z.string().max(1000),
});
export type TrackerChoice = z.infer<typeof trackerChoice>;

/** `--tracker fault` where the Fault Tracker cannot work; the message says why. */
export class TrackerUnavailableError extends Error {
  override name = 'TrackerUnavailableError';
}

/**
 * Decides the tracker on the destination itself, where the addon and the kernel are. The Fault Tracker
 * trusts the kernel to hold back an access to a missing page, so it is never chosen where the TEE
 * leaves the kernel out (SGX).
 */
export function chooseTracker(
  request: TrackerRequest,
  tee: { kernelInTcb: boolean; describe(): string },
): TrackerChoice {
  const untrustedKernel = tee.kernelInTcb
    ? null
    : `the Fault Tracker would trust the kernel to hold back accesses to missing pages, and under ${tee.describe()} the kernel is outside the TEE`;
  switch (request) {
    case 'none':
      return { kind: null, reason: 'no post-copy: every page arrives before the application runs' };
    case 'access':
      return { kind: 'access', reason: 'asked for' };
    case 'fault': {
      if (untrustedKernel) throw new TrackerUnavailableError(`${untrustedKernel}; use --tracker access`);
      const uffd = uffdAvailability();
      if (!uffd.ok)
        throw new TrackerUnavailableError(`the Fault Tracker is not available here: ${uffd.reason}`);
      return { kind: 'fault', reason: `asked for; userfaultfd opened via ${uffd.via}` };
    }
    case 'auto': {
      if (untrustedKernel) return { kind: 'access', reason: untrustedKernel };
      const uffd = uffdAvailability();
      return uffd.ok
        ? { kind: 'fault', reason: `userfaultfd works here (via ${uffd.via})` }
        : { kind: 'access', reason: uffd.reason };
    }
  }
}

/** How the destination's heap must catch misses for `kind`. */
export function missCatcherFor(kind: TrackerKind | null): MissCatcher {
  if (kind === 'fault') return 'userfaultfd';
  return kind === 'access' ? 'present-checks' : 'none';
}

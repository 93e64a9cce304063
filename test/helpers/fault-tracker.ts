import { loadUffd, uffdAvailability } from '../../src/native/uffd.js';

const availability = uffdAvailability();

/**
 * The `skip` option of a test that needs the Fault Tracker: false where userfaultfd works here, else
 * why not (node:test prints it). CI runs as root, where it works.
 */
export const faultTrackerSkip: false | string = availability.ok
  ? false
  : `Fault Tracker unavailable: ${availability.reason}`;

/** userfaultfd regions open in this process (0 without the addon): for leak checks. */
export function uffdRegionsOpen(): number {
  const load = loadUffd();
  return load.ok ? load.addon.regions() : 0;
}

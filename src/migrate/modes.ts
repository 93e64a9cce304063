/**
 * Migration modes (DESIGN.md §5). What distinguishes them is which pages move while the application
 * still runs at the source (pre-copy rounds) and which after it already runs at the destination
 * (post-copy); the blackout in between is as short as what is left.
 */
export const MIGRATION_MODES = ['stop-and-copy', 'pre-copy', 'post-copy', 'hybrid'] as const;
export type MigrationMode = (typeof MIGRATION_MODES)[number];

export function isMigrationMode(value: string): value is MigrationMode {
  return (MIGRATION_MODES as readonly string[]).includes(value);
}

/** Modes that copy rounds of dirty pages before the blackout. */
export function hasPrecopy(mode: MigrationMode): boolean {
  return mode === 'pre-copy' || mode === 'hybrid';
}

/** Modes in which the destination resumes before every page arrived. */
export function hasPostcopy(mode: MigrationMode): boolean {
  return mode === 'post-copy' || mode === 'hybrid';
}

/**
 * Modes in which every page is first written at the destination inside the blackout. In the others,
 * pre-copy rounds or the post-copy push write most pages while an application runs, on one side or
 * the other, so their first touch is no downtime.
 */
export function copiesEverythingInBlackout(mode: MigrationMode): boolean {
  return !hasPrecopy(mode) && !hasPostcopy(mode);
}

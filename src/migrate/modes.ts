/** Migration modes this build implements. Later modes (pre-copy, post-copy, hybrid) extend the list. */
export const MIGRATION_MODES = ['stop-and-copy'] as const;
export type MigrationMode = (typeof MIGRATION_MODES)[number];

export function isMigrationMode(value: string): value is MigrationMode {
  return (MIGRATION_MODES as readonly string[]).includes(value);
}

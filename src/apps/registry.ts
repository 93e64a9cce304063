import type { AppContext, EnclaveApp } from './app.js';
import { createKvApp } from './kv/kv-app.js';

/** Applications the enclave runtime can host; each can fill itself to a size for demos and benchmarks. */
export const APP_KINDS = ['kv'] as const;
export type AppKind = (typeof APP_KINDS)[number];

export interface MigratableApp extends EnclaveApp {
  fill(targetBytes: number): { keys: number; bytes: number };
}

export function createApp(kind: AppKind, ctx: AppContext): MigratableApp {
  switch (kind) {
    case 'kv':
      return createKvApp(ctx);
  }
}

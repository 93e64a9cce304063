import { type AddonLoad, loadAddon } from './addon-path.js';

/**
 * Loader for the data-path addon (native/datapath, built with the userfaultfd addon on `npm ci`):
 * AES-256-GCM and SHA-256 page leaves from Node's own OpenSSL, into and out of caller-owned memory.
 * Optional: without it src/crypto/data-path.ts falls back to node:crypto, byte for byte the same.
 */

const ADDON_FILE = 'constmig_datapath.node';

/** The addon's exports (native/datapath/datapath.cc). Views may be over SharedArrayBuffers. */
export interface DataPathAddon {
  /** out = the parts encrypted in order || the 16-byte tag; out is exactly that long. */
  gcmSeal(
    key: Uint8Array,
    iv: Uint8Array,
    aad: readonly Uint8Array[],
    parts: readonly Uint8Array[],
    out: Uint8Array,
  ): void;
  /** Decrypts into target and checks the tag; false (and target wiped) if it does not verify. */
  gcmOpen(
    key: Uint8Array,
    iv: Uint8Array,
    aad: readonly Uint8Array[],
    ciphertext: readonly Uint8Array[],
    tag: Uint8Array,
    target: Uint8Array,
  ): boolean;
  /** leaves[32i, 32i+32) = SHA-256(u64le(firstPage + i) || page i) for each 4096-byte page. */
  sha256PageLeaves(pages: Uint8Array, firstPage: number, leaves: Uint8Array): void;
}

export type DataPathLoad = AddonLoad<DataPathAddon>;

let loaded: DataPathLoad | null = null;

/** Loads the addon once per thread; `{ ok: false, reason }` says why it is not there. */
export function loadDataPathAddon(): DataPathLoad {
  loaded ??= loadAddon<DataPathAddon>(ADDON_FILE, 'data-path', 'CONSTMIG_DATAPATH_ADDON');
  return loaded;
}

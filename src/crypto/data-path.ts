import { createCipheriv, createDecipheriv, createSecretKey, hash, type KeyObject } from 'node:crypto';
import { PAGE_SIZE } from '../heap/constants.js';
import { type Chosen, chooseImplementation } from '../native/addon-path.js';
import { type DataPathAddon, loadDataPathAddon } from '../native/datapath.js';

export const TAG_BYTES = 16;
export const LEAF_BYTES = 32;

/** AES-256-GCM under one key. */
export interface Aead {
  /**
   * The parts encrypted in order, then the 16-byte tag: ciphertext || tag, in one or more buffers.
   * `alloc`, if given, provides the output memory where the implementation can write into it.
   */
  seal(
    iv: Uint8Array,
    aad: readonly Uint8Array[],
    parts: readonly Uint8Array[],
    alloc?: (length: number) => Buffer,
  ): Buffer[];
  /**
   * Decrypts `ciphertext` into `target` (exactly as long) if `tag` verifies and answers true;
   * otherwise answers false and `target` holds none of the plaintext. The target may be written
   * before the tag is checked: it must be memory nothing reads until this returns.
   */
  open(
    iv: Uint8Array,
    aad: readonly Uint8Array[],
    ciphertext: readonly Uint8Array[],
    tag: Uint8Array,
    target: Uint8Array,
  ): boolean;
}

/**
 * Who does the per-byte work of a migration: AES-256-GCM for every frame and SHA-256 for the page-set
 * digest's leaves. Two implementations, identical byte for byte (test/crypto/data-path.test.ts runs
 * one suite against both): the native addon, which works in place on caller memory, and node:crypto,
 * used where the addon is not built.
 */
export interface DataPath {
  readonly name: 'native' | 'node:crypto';
  aead(key: Uint8Array): Aead;
  /** leaves[32i, 32i+32) = SHA-256(u64le(firstPage + i) || page i) for each 4096-byte page of `pages`. */
  pageLeaves(pages: Uint8Array, firstPage: number, leaves: Uint8Array): void;
}

export const nodeCryptoDataPath: DataPath = {
  name: 'node:crypto',
  aead(key) {
    const secret: KeyObject = createSecretKey(key);
    return {
      seal(iv, aad, parts) {
        const cipher = createCipheriv('aes-256-gcm', secret, iv, { authTagLength: TAG_BYTES });
        for (const a of aad) cipher.setAAD(a);
        const out = parts.map((part) => cipher.update(part));
        cipher.final();
        out.push(cipher.getAuthTag());
        return out;
      },
      open(iv, aad, ciphertext, tag, target) {
        const decipher = createDecipheriv('aes-256-gcm', secret, iv, { authTagLength: TAG_BYTES });
        for (const a of aad) decipher.setAAD(a);
        decipher.setAuthTag(tag);
        const plaintext = ciphertext.map((slice) => decipher.update(slice));
        try {
          // GCM's final() compares the tag in constant time.
          decipher.final();
        } catch {
          return false;
        }
        let offset = 0;
        for (const part of plaintext) {
          target.set(part, offset);
          offset += part.length;
        }
        return true;
      },
    };
  },
  pageLeaves(pages, firstPage, leaves) {
    // u64le(page) || page bytes, hashed in one call: cheaper than a Hash object with two updates.
    const input = Buffer.alloc(8 + PAGE_SIZE);
    for (let i = 0; i * PAGE_SIZE < pages.byteLength; i++) {
      // The u64's high half stays 0: a heap holds fewer than 2^32 pages (MAX_HEAP_BYTES).
      input.writeUInt32LE(firstPage + i, 0);
      input.set(pages.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), 8);
      leaves.set(hash('sha256', input, 'buffer'), i * LEAF_BYTES);
    }
  },
};

export function nativeDataPath(addon: DataPathAddon): DataPath {
  return {
    name: 'native',
    aead(key) {
      const raw = Buffer.from(key);
      return {
        seal(iv, aad, parts, alloc = Buffer.allocUnsafeSlow) {
          let length = TAG_BYTES;
          for (const part of parts) length += part.byteLength;
          const out = alloc(length);
          addon.gcmSeal(raw, iv, aad, parts, out);
          return [out];
        },
        open: (iv, aad, ciphertext, tag, target) => addon.gcmOpen(raw, iv, aad, ciphertext, tag, target),
      };
    },
    pageLeaves: (pages, firstPage, leaves) => addon.sha256PageLeaves(pages, firstPage, leaves),
  };
}

let chosen: Chosen<DataPath> | null = null;

/**
 * The data path of this process: the addon if it loads, node:crypto otherwise or when
 * CONSTMIG_DATAPATH=node (for comparisons and to test the fallback).
 */
export function dataPath(): DataPath {
  return chooseDataPath().impl;
}

/** Which data path this process uses, and why. */
export function dataPathChoice(): { name: DataPath['name']; why: string } {
  const { impl, why } = chooseDataPath();
  return { name: impl.name, why };
}

function chooseDataPath(): Chosen<DataPath> {
  if (chosen) return chosen;
  chosen = chooseImplementation({
    forceEnv: 'CONSTMIG_DATAPATH',
    forceValue: 'node',
    load: loadDataPathAddon,
    native: nativeDataPath,
    fallback: nodeCryptoDataPath,
    label: 'data-path',
  });
  warmUp(chosen.impl);
  return chosen;
}

/**
 * The first call of each function looks up its OpenSSL algorithm and compiles the JavaScript around
 * it; in post-copy the first page leaf is hashed in the blackout. Done once, here, on scratch data.
 */
function warmUp(path: DataPath): void {
  const page = new Uint8Array(PAGE_SIZE);
  path.pageLeaves(page, 0, new Uint8Array(LEAF_BYTES));
  const aead = path.aead(new Uint8Array(32));
  const iv = new Uint8Array(12);
  const sealed = Buffer.concat(aead.seal(iv, [], [page]));
  aead.open(iv, [], [sealed.subarray(0, PAGE_SIZE)], sealed.subarray(PAGE_SIZE), page);
}

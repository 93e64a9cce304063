import fs from 'node:fs';
import path from 'node:path';
import type { SimPlatformIdentity } from '../enclave/ipc.js';
import {
  certifyPlatformKey,
  generateEd25519Pem,
  importEd25519PrivateKey,
  spkiBase64,
} from '../tee/sim-root.js';
import { UserError } from '../util/errors.js';

/** Reads a PEM key file, or creates one (mode 0600) if it does not exist yet. */
function loadOrCreateKey(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UserError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
  }
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const { privateKeyPem } = generateEd25519Pem();
  try {
    fs.writeFileSync(file, privateKeyPem, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another host created it first (hosts on one machine share the default sim root): use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return fs.readFileSync(file, 'utf8');
    throw err;
  }
  return privateKeyPem;
}

/**
 * The sim backend's stand-in for this machine's CPU: a platform key kept in the state directory (so
 * a host keeps its identity across restarts) and certified by the sim root, the stand-in for the CPU
 * vendor, whose key hosts of one cluster share. Both files are mode 0600; the sim gives no
 * protection regardless.
 */
export function loadSimPlatform(stateDir: string, rootKeyFile: string): SimPlatformIdentity {
  const rootPem = loadOrCreateKey(rootKeyFile, 'sim root key');
  const platformPem = loadOrCreateKey(path.join(stateDir, 'sim-platform-key.pem'), 'sim platform key');
  let root: string;
  let platformKey: string;
  try {
    root = spkiBase64(importEd25519PrivateKey(rootPem, `sim root key ${rootKeyFile}`));
    platformKey = spkiBase64(importEd25519PrivateKey(platformPem, 'sim platform key'));
  } catch (err) {
    throw new UserError((err as Error).message);
  }
  return {
    kind: 'sim',
    platformPrivateKeyPem: platformPem,
    platformCert: certifyPlatformKey(rootPem, platformKey),
    root,
  };
}

import fs from 'node:fs';
import path from 'node:path';
import { generatePlatformKey } from '../tee/sim.js';

/**
 * The sim backend's platform key stands for this machine's CPU. It is kept in the state directory so
 * that a host keeps its identity across restarts (mode 0600; the sim gives no protection regardless).
 */
export function loadOrCreatePlatformKey(stateDir: string): string {
  const file = path.join(stateDir, 'sim-platform-key.pem');
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const { privateKeyPem } = generatePlatformKey();
  fs.writeFileSync(file, privateKeyPem, { mode: 0o600 });
  return privateKeyPem;
}

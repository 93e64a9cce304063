import os from 'node:os';
import path from 'node:path';
import { HostDaemon } from '../../host/daemon.js';
import { loadOrCreateToken } from '../../host/token.js';
import { parseHostPort } from '../../util/address.js';
import { UserError } from '../../util/errors.js';
import { portOption } from '../context.js';

export interface HostCommandOptions {
  listen: string;
  bind?: string;
  peerPort?: string;
  tokenFile?: string;
  stateDir?: string;
  simRootKey?: string;
  policy?: string;
  spareEnclave: boolean;
}

/** Hosts on one machine share this sim root by default, so that they trust each other out of the box. */
export const DEFAULT_SIM_ROOT_KEY = path.join(os.tmpdir(), 'constmig', 'sim-root-key.pem');

export async function hostCommand(options: HostCommandOptions): Promise<void> {
  const listen = parseHostPort(options.listen, '--listen');
  const bind = options.bind ?? listen.host;
  const stateDir = options.stateDir ?? path.join(os.tmpdir(), 'constmig', `host-${bind}-${listen.port}`);
  const tokenFile = options.tokenFile ?? path.join(stateDir, 'control-token');
  const daemon = new HostDaemon({
    listen,
    bind,
    peerPort: options.peerPort === undefined ? null : portOption(options.peerPort, '--peer-port'),
    stateDir,
    token: loadOrCreateToken(tokenFile),
    simRootKeyFile: options.simRootKey ?? DEFAULT_SIM_ROOT_KEY,
    policyFile: options.policy,
    spareEnclave: options.spareEnclave,
  });
  try {
    await daemon.start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw new UserError(`cannot listen: ${bind}:${listen.port} (or the peer port) is already in use`);
    if (code === 'EADDRNOTAVAIL')
      throw new UserError(`cannot listen: ${bind} is not an address of this machine`);
    throw err;
  }
  process.stdout.write(
    `${JSON.stringify({ event: 'listening', control: daemon.controlUrl, peerPort: daemon.peerPort, bind, stateDir, tokenFile })}\n`,
  );
  const shutdown = () => {
    void daemon.close().finally(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

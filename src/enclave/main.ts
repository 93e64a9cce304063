/**
 * Entry point of an enclave process (sim backend: one Node process per enclave, spawned by the host
 * daemon with an IPC channel).
 */
// First: it must run before any schema is built.
import '../util/zod-jitless.js';
import type { EnclaveToHost } from './ipc.js';
import { EnclaveRuntime } from './runtime.js';

function send(message: EnclaveToHost): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!process.send) return reject(new Error('enclave process started without an IPC channel'));
    process.send(message, undefined, {}, (err) => (err ? reject(err) : resolve()));
  });
}

if (!process.send) {
  process.stderr.write('constmig: the enclave runtime is started by `constmig host`, not by hand\n');
  process.exit(2);
}

const runtime = new EnclaveRuntime(send);
process.on('message', (message, handle) => {
  runtime.handle(message, handle).catch((err) => {
    process.stderr.write(`enclave: unhandled ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
});
// The host daemon going away leaves nobody to obey; an orphan enclave would hold its port forever.
process.on('disconnect', () => process.exit(0));

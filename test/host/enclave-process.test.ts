import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { EnclaveProcess } from '../../src/host/enclave-process.js';

/** Blocks this thread: no event is processed meanwhile, so the host cannot learn of the exit. */
function block(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// An unhandled 'error' (EPIPE) here would be an uncaught exception: node:test fails the test with it.
test('a message to an enclave that exits on its own is dropped, not an uncaught EPIPE', async () => {
  const enclave = new EnclaveProcess(null);
  const exited = once(enclave, 'exit');
  enclave.send({ type: 'stop' });
  // The enclave exits meanwhile; later writes hit its closed IPC pipe.
  for (let id = 0; id < 100; id++) {
    enclave.send({ type: 'query', id });
    block(5);
  }
  await exited;
  await nextTurn();
  assert.equal(enclave.exited, true);
});

test(
  'a socket handed to an enclave that has exited is closed, not kept open by the host',
  { timeout: 10_000 },
  async () => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    const client = net.connect(port, '127.0.0.1');
    const [accepted] = (await once(server, 'connection')) as [net.Socket];
    const enclave = new EnclaveProcess(null);
    const exited = once(enclave, 'exit');
    enclave.send({ type: 'stop' });
    await exited;
    enclave.send({ type: 'data-connection', ticket: 'x'.repeat(64) }, accepted);
    // The peer sees the connection end (FIN or reset) instead of waiting on it.
    await Promise.race([once(client, 'end'), once(client, 'close'), once(client, 'error')]);
    assert.equal(accepted.destroyed, true);
    client.destroy();
    server.close();
  },
);

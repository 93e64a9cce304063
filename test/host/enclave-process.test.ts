import assert from 'node:assert/strict';
import { once } from 'node:events';
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

import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { peerAuth } from '../../src/host/peer-auth.js';
import { PeerServer } from '../../src/host/peer-server.js';
import { encodePreamble } from '../../src/wire/preamble.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'socket-echo-child.js');

// The host reads the routing preamble, then hands the socket to the enclave process: a busy host or a
// queued IPC pipe can make that take a while, and until the child's ACK closes the host's copy both
// processes hold the socket. A host copy still reading takes (and then drops) bytes meant for the
// enclave: the handshakes and ATTACHes that timed out now and then on a loaded machine.
test(
  'bytes that come after the preamble, while the host still holds the socket, reach the enclave',
  { timeout: 30_000 },
  async () => {
    const token = 'x'.repeat(32);
    const ticket = 'ab'.repeat(16);
    const child = fork(CHILD, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    const received = new Map<number, string>();
    child.on('message', (m: { id: number; got: string }) => received.set(m.id, m.got));
    let nextId = 0;
    const server = new PeerServer({
      token,
      route: (_ticket, socket) => {
        const id = nextId++;
        setTimeout(() => child.send({ id }, socket), 150);
        return true;
      },
      log: pino({ level: 'silent' }),
    });
    const port = await server.listen('127.0.0.1', 0);
    try {
      const runs = 5;
      const sockets = [];
      for (let id = 0; id < runs; id++) {
        const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
        sockets.push(socket);
        await once(socket, 'connect');
        socket.write(encodePreamble(ticket, peerAuth(token, ticket).toString('hex')));
        // Routed by now, not yet handed over.
        await new Promise((r) => setTimeout(r, 50));
        socket.write(`hello ${id}.`);
      }
      const deadline = Date.now() + 5000;
      while (received.size < runs && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const lost = [...Array(runs).keys()].filter((id) => received.get(id) !== `hello ${id}.`);
      assert.deepEqual(lost, [], 'connections whose bytes did not reach the enclave');
      for (const socket of sockets) socket.destroy();
    } finally {
      server.close();
      child.kill();
    }
  },
);

import net from 'node:net';
import { errorMessage } from '../util/errors.js';

/** Opens a TCP connection with Nagle off (frames are written whole), failing after `timeoutMs`. */
export function dial(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(
      () => socket.destroy(new Error(`timed out connecting to ${host}:${port}`)),
      timeoutMs,
    );
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot open data connection to ${host}:${port}: ${errorMessage(err)}`));
    });
  });
}

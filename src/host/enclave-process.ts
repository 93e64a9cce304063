import { type ChildProcess, fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import type net from 'node:net';
import { fileURLToPath } from 'node:url';
import { type EnclaveToHost, enclaveToHost, type HostToEnclave } from '../enclave/ipc.js';

/**
 * V8 settings of every enclave process, for its blackouts (docs/decisions.md, "Nothing cold in the
 * blackout"): a migration collects garbage just before its blackout (src/util/collect-garbage.ts), and
 * all code is compiled when the process starts and kept, instead of each function on its first call,
 * which for most of a destination's migration code is in the blackout (3-8 ms of an 8 GiB post-copy
 * blackout, profiled). The cost is at start-up, which a spare enclave hides: +70 ms and +3 MB.
 */
const ENCLAVE_V8_FLAGS = ['--expose-gc', '--no-lazy', '--no-flush-bytecode'];

/** The enclave entry point, next to this file's folder whether we run compiled (.js) or from .ts. */
const ENCLAVE_ENTRY = fileURLToPath(
  new URL(`../enclave/main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
);

/**
 * glibc serves allocations above 128 KiB with fresh mmap'd pages, and first-touching fresh pages costs
 * 3-10 µs each on these VMs; AES-GCM output buffers of whole extents fall in that range. Raising the
 * threshold keeps them in the reusable arena (measured: ~1 -> ~3 GB/s sealing 1 MiB records).
 */
const ENCLAVE_ENV = { MALLOC_MMAP_THRESHOLD_: String(32 * 2 ** 20) };

/**
 * The host's handle on one enclave process: typed messages over the IPC channel, validated on
 * receipt. Emits 'message' (EnclaveToHost) and 'exit' (code).
 */
export class EnclaveProcess extends EventEmitter<{ message: [EnclaveToHost]; exit: [number | null] }> {
  private readonly child: ChildProcess;
  private nextQueryId = 1;
  exited = false;

  constructor(logFile: string | null) {
    super();
    const out = logFile ? fs.openSync(logFile, 'a', 0o600) : 'inherit';
    this.child = fork(ENCLAVE_ENTRY, [], {
      stdio: ['ignore', out, out, 'ipc'],
      env: { ...process.env, ...ENCLAVE_ENV },
      serialization: 'json',
      execArgv: [...process.execArgv, ...ENCLAVE_V8_FLAGS],
    });
    if (typeof out === 'number') fs.closeSync(out);
    this.child.on('message', (raw) => {
      const parsed = enclaveToHost.safeParse(raw);
      if (parsed.success) this.emit('message', parsed.data);
    });
    this.child.on('exit', (code) => {
      this.exited = true;
      this.emit('exit', code);
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  send(message: HostToEnclave, socket?: net.Socket): void {
    // A socket nobody will take is closed, not kept: its peer learns at once, and the host (which has
    // stopped reading it) does not hold it open until it exits.
    if (this.exited || !this.child.connected) {
      socket?.destroy();
      return;
    }
    // The enclave may exit between the check and the write (EPIPE): its 'exit' tells the host what
    // happened, so a failed send only drops the socket it carried, never crashes the host.
    this.child.send(message, socket, (err) => {
      if (err) socket?.destroy();
    });
  }

  /** Resolves with the first message the predicate accepts; rejects if the process exits first. */
  waitFor<T extends EnclaveToHost>(accept: (m: EnclaveToHost) => m is T, timeoutMs = 0): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => done(new Error('enclave did not answer in time')), timeoutMs)
          : undefined;
      const onMessage = (m: EnclaveToHost) => {
        if (accept(m)) done(undefined, m);
      };
      const onExit = (code: number | null) => done(new Error(`enclave process exited (code ${code})`));
      const done = (err?: Error, value?: T) => {
        clearTimeout(timer);
        this.off('message', onMessage);
        this.off('exit', onExit);
        if (err) reject(err);
        else resolve(value as T);
      };
      this.on('message', onMessage);
      this.on('exit', onExit);
      if (this.exited) onExit(null);
    });
  }

  async query(timeoutMs = 2000): Promise<Record<string, number>> {
    const id = this.nextQueryId++;
    this.send({ type: 'query', id });
    const reply = await this.waitFor(
      (m): m is Extract<EnclaveToHost, { type: 'query-result' }> => m.type === 'query-result' && m.id === id,
      timeoutMs,
    );
    return reply.stats;
  }

  /** Asks the enclave to stop; kills it if it has not gone after the grace period. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.once('exit', () => resolve()));
    this.send({ type: 'stop' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

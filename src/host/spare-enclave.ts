import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pino from 'pino';
import { EnclaveProcess } from './enclave-process.js';

/**
 * One enclave process started before it is needed, so that PREPARE does not wait for Node to start
 * and load the enclave's code and its application thread (0.4-1 s on the test VMs, most of a small
 * migration's time). It is an ordinary enclave that has not been told what to run yet: the host
 * sends it the same `init` as a process it has just forked, and it measures its code when it starts.
 */
export class SpareEnclave {
  private spare: { process: EnclaveProcess; logFile: string; env: string } | null = null;
  private closed = false;

  constructor(
    private readonly logDir: string,
    private readonly log: pino.Logger,
  ) {}

  /** The spare's process id, or null if there is none. */
  get pid(): number | null {
    return this.spare?.process.pid ?? null;
  }

  /** Starts a spare unless there is one (or the host is closing). */
  replenish(): void {
    if (this.spare || this.closed) return;
    const logFile = path.join(this.logDir, `spare-${randomBytes(4).toString('hex')}.log`);
    const spare = { process: new EnclaveProcess(logFile), logFile, env: environment() };
    this.spare = spare;
    this.log.info({ pid: spare.process.pid }, 'spare enclave started');
    spare.process.once('exit', (code) => {
      // Not started again here: a spare that cannot start would be forked for ever.
      if (this.spare !== spare) return;
      this.spare = null;
      this.log.warn({ code, logFile }, 'spare enclave exited');
    });
  }

  /**
   * The spare, its log now at `logFile`; null if there is none. The caller owns the process. A spare
   * started under another environment than the host has now (e.g. CONSTMIG_UFFD_ADDON) is not what
   * a process forked now would be: it is stopped, and null returned.
   */
  take(logFile: string): EnclaveProcess | null {
    const spare = this.spare;
    this.spare = null;
    if (!spare || spare.process.exited) return null;
    if (spare.env !== environment()) {
      this.log.info({ pid: spare.process.pid }, 'spare enclave stopped: the environment changed');
      void spare.process.stop();
      return null;
    }
    adoptLog(spare.logFile, logFile);
    return spare.process;
  }

  async close(): Promise<void> {
    this.closed = true;
    const spare = this.spare;
    this.spare = null;
    await spare?.process.stop();
  }
}

/** What an enclave process inherits from the host (EnclaveProcess passes it on). */
function environment(): string {
  return JSON.stringify(Object.entries(process.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Moves a spare's log to the enclave's log file. That file may exist (the enclave migrated away from
 * this host and back): its lines go first, as when an enclave appends to it. The spare writes only
 * after its `init`, and it appends (O_APPEND), so no line is lost or overwritten.
 */
export function adoptLog(spareLog: string, logFile: string): void {
  if (fs.existsSync(logFile)) {
    fs.writeFileSync(spareLog, Buffer.concat([fs.readFileSync(logFile), fs.readFileSync(spareLog)]));
  }
  fs.renameSync(spareLog, logFile);
}

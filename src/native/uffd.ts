import { readFileSync } from 'node:fs';
import { type AddonLoad, loadAddon } from './addon-path.js';

/**
 * Loader for the userfaultfd addon (native/uffd, built by scripts/build-native.sh on `npm ci`): the
 * kernel side of the Fault Tracker (issue 5, docs/fault-tracker.md). The addon is optional: where it
 * did not build, does not load or the kernel refuses userfaultfd, constmig runs with the Access
 * Tracker, and these functions say why.
 *
 * A region is an anonymous private mapping registered with userfaultfd in MISSING mode, seen from
 * JavaScript as SharedArrayBuffer segments over the same memory (no copy). A thread that reads or
 * writes a page never installed blocks in the kernel until another thread installs it (copy or
 * zeroPage) — so the handler must never run on a thread that touches the region itself.
 */

const ADDON_FILE = 'constmig_uffd.node';

/** Bytes of installed and of already present memory after copy() or zeroPage(). */
export interface FillResult {
  installed: number;
  alreadyPresent: number;
}

/** What map() returns, and what another thread needs to open the same region (UffdRegion.fromShared). */
export interface SharedUffdRegion {
  /** Process-wide id of the region: valid on every thread of this process. */
  id: number;
  byteLength: number;
  /** The region in order, each segment a SharedArrayBuffer over a slice of it. */
  segments: SharedArrayBuffer[];
  /** How the userfaultfd was opened: 'syscall', '/dev/userfaultfd' or 'user-mode-only'. */
  via: UffdVia;
}

/** Called on the watching thread's event loop with the faults read since the last call (page offsets). */
export type FaultCallback = (error: NodeJS.ErrnoException | null, offsets: number[]) => void;

export type UffdVia = 'syscall' | '/dev/userfaultfd' | 'user-mode-only';

/** The addon's exports (native/uffd/uffd.cc). Errors are Node errno errors: `code` is e.g. 'EPERM'. */
export interface UffdAddon {
  readonly pageSize: number;
  probe(userModeOnly?: boolean): { ok: true; via: UffdVia } | { ok: false; error: NodeJS.ErrnoException };
  map(bytes: number, segmentBytes: number, userModeOnly: boolean): SharedUffdRegion;
  waitFault(id: number, timeoutMs: number): number | null;
  copy(id: number, offset: number, source: ArrayBufferView, dontWake?: boolean): FillResult;
  zeroPage(id: number, offset: number, length: number, dontWake?: boolean): FillResult;
  wake(id: number, offset: number, length: number): void;
  watch(id: number, callback: FaultCallback): void;
  unwatch(id: number): boolean;
  discard(id: number, offset: number, length: number): void;
  close(id: number): boolean;
  regions(): number;
}

export type UffdLoad = AddonLoad<UffdAddon>;
export type UffdAvailability =
  { ok: true; addon: UffdAddon; via: UffdVia } | { ok: false; reason: string; code?: string };

let loaded: UffdLoad | null = null;

/** Loads the addon once per thread; `{ ok: false, reason }` says why it is not there. */
export function loadUffd(): UffdLoad {
  loaded ??=
    process.platform === 'linux'
      ? loadAddon<UffdAddon>(ADDON_FILE, 'userfaultfd', 'CONSTMIG_UFFD_ADDON')
      : { ok: false, reason: `userfaultfd is Linux only (this is ${process.platform})` };
  return loaded;
}

/**
 * Whether a region can be made here: the addon loads and the kernel lets this process open a
 * userfaultfd that handles kernel-mode faults too (unless `userModeOnly`). Root (CAP_SYS_PTRACE) may;
 * an unprivileged process needs vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd.
 */
export function uffdAvailability(options: { userModeOnly?: boolean } = {}): UffdAvailability {
  const load = loadUffd();
  if (!load.ok) return { ok: false, reason: load.reason };
  const probe = load.addon.probe(options.userModeOnly ?? false);
  if (probe.ok) return { ok: true, addon: load.addon, via: probe.via };
  const code = probe.error.code ?? 'UNKNOWN';
  let reason = `the kernel refuses userfaultfd (${code})`;
  if (code === 'EPERM' || code === 'EACCES') {
    reason += `: unprivileged processes need vm.unprivileged_userfaultfd=1 (now ${unprivilegedSysctl()}) or read-write access to /dev/userfaultfd`;
  } else if (code === 'ENOSYS') {
    reason += ': the kernel is built without CONFIG_USERFAULTFD';
  }
  return { ok: false, reason, code };
}

function unprivilegedSysctl(): string {
  try {
    return readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

function requireAddon(): UffdAddon {
  const load = loadUffd();
  if (!load.ok) throw new Error(load.reason);
  return load.addon;
}

/**
 * One userfaultfd region, usable from any thread of the process: map() on one thread, post share() to
 * a worker, open it there with fromShared(). Offsets and lengths are whole pages (4096 B).
 */
export class UffdRegion {
  private constructor(
    private readonly addon: UffdAddon,
    private readonly shared: SharedUffdRegion,
  ) {}

  /**
   * Maps `bytes` (whole pages) of memory that reads as missing until installed, in SharedArrayBuffer
   * segments of `segmentBytes` (default: one segment). Do not inspect the segments (console.log,
   * util.inspect) on a thread that also handles the faults: reading a missing page waits for the handler.
   */
  static map(bytes: number, options: { segmentBytes?: number; userModeOnly?: boolean } = {}): UffdRegion {
    const addon = requireAddon();
    const shared = addon.map(bytes, options.segmentBytes ?? bytes, options.userModeOnly ?? false);
    return new UffdRegion(addon, shared);
  }

  /** The same region, on another thread. */
  static fromShared(shared: SharedUffdRegion): UffdRegion {
    return new UffdRegion(requireAddon(), shared);
  }

  share(): SharedUffdRegion {
    return this.shared;
  }

  get id(): number {
    return this.shared.id;
  }
  get byteLength(): number {
    return this.shared.byteLength;
  }
  get segments(): readonly SharedArrayBuffer[] {
    return this.shared.segments;
  }
  get via(): UffdVia {
    return this.shared.via;
  }

  /** Offset of the next faulting page, or null after `timeoutMs` (< 0: no limit). Blocks this thread. */
  waitFault(timeoutMs: number): number | null {
    return this.addon.waitFault(this.shared.id, timeoutMs);
  }

  /** Installs `source` (whole pages) at `offset` (UFFDIO_COPY); pages already present are skipped. */
  copy(offset: number, source: ArrayBufferView, options: { dontWake?: boolean } = {}): FillResult {
    return this.addon.copy(this.shared.id, offset, source, options.dontWake ?? false);
  }

  /** Installs zero pages over [offset, offset + length) (UFFDIO_ZEROPAGE); present pages are skipped. */
  zeroPage(offset: number, length: number, options: { dontWake?: boolean } = {}): FillResult {
    return this.addon.zeroPage(this.shared.id, offset, length, options.dontWake ?? false);
  }

  /**
   * Delivers the region's faults to `callback` on this thread's event loop, in batches in arrival
   * order (a page several threads wait on may come more than once). One watch per region; this
   * thread must then never touch a missing page of the region itself.
   */
  watch(callback: FaultCallback): void {
    this.addon.watch(this.shared.id, callback);
  }

  /** Stops the watch (on the thread that started it); false if there was none. */
  unwatch(): boolean {
    return this.addon.unwatch(this.shared.id);
  }

  /** Drops the pages' contents (MADV_DONTNEED): they are missing again, and the next touch faults. */
  discard(offset: number, length: number): void {
    this.addon.discard(this.shared.id, offset, length);
  }

  /** Wakes the threads waiting on [offset, offset + length) (UFFDIO_WAKE). */
  wake(offset: number, length: number): void {
    this.addon.wake(this.shared.id, offset, length);
  }

  /** Regions open in this process (every thread), for leak checks. */
  openRegions(): number {
    return this.addon.regions();
  }

  /**
   * Closes the userfaultfd (every thread's view of the region): the region is unregistered at once,
   * a waitFault in progress throws EBADF, threads blocked on a missing page wake up and read zeros,
   * and the memory is plain memory from then on. Stop a watch with unwatch() (on its thread). The
   * memory is unmapped when no SharedArrayBuffer over it is left. False if it was already closed.
   */
  close(): boolean {
    return this.addon.close(this.shared.id);
  }
}

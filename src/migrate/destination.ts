import type net from 'node:net';
import type { MessagePort } from 'node:worker_threads';
import { setImmediate as yieldToEvents } from 'node:timers/promises';
import { z } from 'zod';
import type { AppSnapshot } from '../apps/app.js';
import { handshake, type SessionKeys } from '../crypto/handshake.js';
import { Opener, Sealer } from '../crypto/seal.js';
import { decodeBitmap } from '../heap/bitmap-codec.js';
import { PAGE_SIZE, SEGMENT_PAGES } from '../heap/constants.js';
import type { PageBitmap } from '../heap/page-bitmap.js';
import { PageSetDigest } from '../heap/page-set-digest.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import type { TeeBackend } from '../tee/backend.js';
import type { AttestationPolicy } from '../tee/policy.js';
import { FETCH_FAILED, type FetchRequest, type TrackerStats } from '../trackers/tracker.js';
import { errorMessage } from '../util/errors.js';
import { FrameType } from '../wire/frame.js';
import { ChannelClosedError, FramedSocket } from '../wire/framed-socket.js';
import { openControl, ProtocolError, sendControl } from './control-channel.js';
import { extentsOf } from './extents.js';
import { type ControlOf, MAX_FETCH_PAGES } from './messages.js';
import { metadataDigest } from './metadata-digest.js';
import type { MigratingApp } from './migrating-app.js';
import { hasPostcopy, type MigrationMode } from './modes.js';
import { type InstallPolicy, PageInstaller } from './page-installer.js';
import { cpuMark, cpuSince, peakRssBytes } from './resources.js';
import { TokenError, TokenMinter, TokenVerifier } from './tokens.js';
import { acceptUrgentChannel, type UrgentChannel } from './urgent-channel.js';

export interface DestinationDeps {
  heap: SecureHeap;
  app: MigratingApp;
  appKind: string;
  tee: TeeBackend;
  policy: AttestationPolicy;
  /** The application serves here from now on (before COMMIT in post-copy). */
  onResumed: () => void;
}

/**
 * Until it resumes, the destination can always refuse, and tells the source so, which may then serve
 * again; once the application serves here, the source must never run again.
 */
export type DestinationOutcome =
  | { kind: 'resumed'; resumedAtMs: number; pagesInstalled: number; commitDelivered: boolean }
  /**
   * Post-copy failed after the application resumed here: pages are missing for good (the source or
   * the network is gone). The application cannot be completed; accesses to missing pages fail.
   */
  | { kind: 'incomplete'; message: string; pagesMissing: number }
  /**
   * Never resumed and never will. `abortToken` (null if the handshake did not finish) lets a source
   * that already sent START serve again; it was sent on the channel, and the runtime also hands it
   * to its host in case the channel was gone.
   */
  | { kind: 'aborted'; message: string; abortToken: string | null };

/** Destination phases; an ABORT token can be minted in every phase before `resumed`. */
export type DestinationPhase = 'handshake' | 'prefault' | 'receiving' | 'resuming' | 'resumed';

/**
 * After sending an abort, keep reading (and dropping) what the source still sends until it closes:
 * closing with unread data would reset the connection, and a reset can destroy the abort in flight.
 */
const ABORT_LINGER_MS = 5000;
/** Post-copy needs the urgent channel before it resumes; the source opens it right after PREFAULTED. */
const URGENT_WAIT_MS = 10_000;

async function discardUntilClosed(channel: FramedSocket, timeoutMs: number): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    for (;;) await channel.next(signal);
  } catch {
    // closed by the source, or the linger time is over
  }
}

/**
 * The destination side of one migration. `run` drives it over the first connection; `attach` takes
 * the further connections the source opens (the urgent channel of post-copy).
 */
export class IncomingMigration {
  private phase: DestinationPhase = 'handshake';
  private keys: SessionKeys | undefined;
  private urgent: UrgentChannel | undefined;
  private urgentWaiters: ((channel: UrgentChannel) => void)[] = [];
  private readonly parked: net.Socket[] = [];

  constructor(private readonly deps: DestinationDeps) {}

  /** A further connection for this migration (the host routed it here by its ticket). */
  attach(socket: net.Socket): void {
    if (!this.keys) {
      this.parked.push(socket);
      return;
    }
    acceptUrgentChannel(socket, this.keys, this.urgent?.generation ?? 0).then(
      (urgent) => {
        this.urgent?.channel.destroy();
        this.urgent = urgent;
        for (const waiter of this.urgentWaiters.splice(0)) waiter(urgent);
      },
      () => {
        // Not a connection of this migration: closed unread, the migration goes on.
      },
    );
  }

  async run(socket: net.Socket): Promise<DestinationOutcome> {
    const { heap } = this.deps;
    const channel = new FramedSocket(socket);
    const cpu = cpuMark();
    let sealer: Sealer | undefined;
    let minter: TokenMinter | undefined;
    try {
      const keys = await handshake({
        role: 'destination',
        channel,
        tee: this.deps.tee,
        policy: this.deps.policy,
      });
      this.keys = keys;
      for (const parked of this.parked.splice(0)) this.attach(parked);
      sealer = new Sealer(keys.sendKey, keys.migrationId);
      const opener = new Opener(keys.recvKey, keys.migrationId);
      minter = new TokenMinter(keys.ownTokenKey, keys.migrationId);
      const tokens = new TokenVerifier(keys.peerTokenKey, keys.migrationId);
      this.phase = 'prefault';

      const prefault = openControl(await channel.next(), opener);
      if (prefault.t !== 'prefault') throw new ProtocolError(`expected PREFAULT, got '${prefault.t}'`);
      const pages = prefaultPages(heap, decodeBitmap(prefault.allocated, heap.pageCount));
      await sendControl(channel, sealer, { t: 'prefaulted', pages });
      this.phase = 'receiving';

      const digest = prefault.verify ? new PageSetDigest(heap.pageCount) : null;
      const installer = new PageInstaller(heap, digest, (first, count) =>
        heap.present.publishRange(first, count),
      );
      let policy: InstallPolicy = { kind: 'rounds' };
      let begin: ControlOf<'begin'> | undefined;
      let allocated: PageBitmap | undefined;
      let start: ControlOf<'start'> | undefined;
      while (!start) {
        const frame = await channel.next();
        if (frame.header.type === FrameType.Pages) {
          installer.install(frame, opener, policy);
          continue;
        }
        const message = openControl(frame, opener);
        if (message.t === 'begin' && !begin) {
          begin = message;
          allocated = this.checkBegin(begin, prefault.mode, prefault.verify, digest);
          policy = { kind: 'final', epoch: begin.epoch, allocated };
          continue;
        }
        if (message.t !== 'start' || !begin) {
          throw new ProtocolError(`unexpected '${message.t}' while receiving pages`);
        }
        start = message;
      }

      this.phase = 'resuming';
      const metadata = checkStart(tokens, start, begin!);
      const postcopy = hasPostcopy(begin!.mode);
      // Every page present now is one to migrate (checkBegin and the installer see to it).
      const missing = allocated!.count() - heap.present.count();
      if (!postcopy && missing !== 0) {
        throw new ProtocolError(`START came with ${missing} of ${allocated!.count()} pages still missing`);
      }
      if (!postcopy) {
        const ownDigest = digest?.hex() ?? null;
        if (ownDigest !== start.digest) {
          throw new ProtocolError(
            `content digest mismatch: source ${start.digest}, destination ${ownDigest}`,
          );
        }
      }
      const urgent = postcopy ? await this.awaitUrgent() : undefined;

      // Pages that are not to migrate hold nothing the application may read: usable as they are.
      const unallocated = allocated!.copy();
      unallocated.invert();
      for (const { first, count } of heap.runs(unallocated)) heap.present.publishRange(first, count);
      // In post-copy, pages flow from here on: restoring the application already faults on some.
      let fetcher: Fetcher | undefined;
      let receiving: Promise<void> | undefined;
      if (postcopy) {
        policy = { kind: 'live', epoch: begin!.epoch, allocated: allocated! };
        fetcher = new Fetcher(heap, await this.deps.app.track(), urgent!);
        receiving = receiveUntilComplete(
          heap,
          installer,
          policy,
          channel,
          opener,
          () => this.urgent!,
          allocated!,
        );
        // A failure wakes the application thread, whose access then fails instead of waiting for ever.
        receiving.catch(() => fetcher!.fail());
      }
      await this.deps.app.restore(parseSnapshot(start.snapshot));
      // From here on this side serves: it must never mint an ABORT token again.
      this.phase = 'resumed';
      const { servingAtMs: resumedAtMs } = await this.deps.app.serve();
      this.deps.onResumed();

      let faults: ControlOf<'commit'>['faults'] = null;
      if (receiving) {
        try {
          await receiving;
        } catch (err) {
          // The source waits for COMMIT on this channel: closing it is how it learns to stay in doubt.
          channel.destroy();
          const left = allocated!.count() - countPresent(heap, allocated!);
          return { kind: 'incomplete', message: errorMessage(err), pagesMissing: left };
        }
        fetcher!.close();
        faults = summarise((await this.deps.app.untrack()).tracker);
      }

      const ownDigest = digest?.hex() ?? null;
      const pagesInstalled = allocated!.count();
      const usage = cpuSince(cpu);
      let commitDelivered = true;
      try {
        await sendControl(channel, sealer, {
          t: 'commit',
          resumedAtMs,
          pagesInstalled,
          digest: ownDigest,
          peakRssBytes: peakRssBytes(),
          cpuUserMs: usage.userMs,
          cpuSystemMs: usage.systemMs,
          faults,
          token: minter.commit({
            pagesInstalled,
            metadataDigest: metadata,
            contentDigest: ownDigest === null ? null : Buffer.from(ownDigest, 'hex'),
          }),
        });
        await channel.end();
      } catch {
        // The application already serves here; a lost COMMIT leaves the source paused, never running.
        commitDelivered = false;
      }
      return { kind: 'resumed', resumedAtMs, pagesInstalled, commitDelivered };
    } catch (err) {
      const message = errorMessage(err);
      // Once the application may have served here, the source must never be released.
      const abortToken = this.phase === 'resumed' ? null : (minter?.abort() ?? null);
      if (sealer && abortToken) {
        await sendControl(channel, sealer, {
          t: 'abort',
          reason: message.slice(0, 500),
          token: abortToken,
        }).catch(() => {});
        await discardUntilClosed(channel, ABORT_LINGER_MS);
      }
      channel.destroy();
      return { kind: 'aborted', message, abortToken };
    } finally {
      this.urgent?.channel.destroy();
    }
  }

  /**
   * BEGIN names the pages to migrate and those already current here. Pages received in rounds that
   * are stale, or no longer allocated, stop being present (and leave the digest); they come again.
   */
  private checkBegin(
    begin: ControlOf<'begin'>,
    mode: MigrationMode,
    verify: boolean,
    digest: PageSetDigest | null,
  ): PageBitmap {
    const { heap } = this.deps;
    if (begin.heapBytes !== heap.byteLength) {
      throw new ProtocolError(
        `heap size mismatch: source ${begin.heapBytes} B, destination ${heap.byteLength} B`,
      );
    }
    if (begin.app !== this.deps.appKind) {
      throw new ProtocolError(`application mismatch: '${begin.app}' vs '${this.deps.appKind}'`);
    }
    if (begin.mode !== mode || begin.verify !== verify) {
      throw new ProtocolError('BEGIN names another mode or verify setting than PREFAULT');
    }
    const allocated = decodeBitmap(begin.allocated, heap.pageCount);
    const current = decodeBitmap(begin.current, heap.pageCount);
    if (allocated.count() !== begin.allocatedPages) {
      throw new ProtocolError(`BEGIN announces ${begin.allocatedPages} pages but names ${allocated.count()}`);
    }
    if (!current.isSubsetOf(allocated) || !current.isSubsetOf(heap.present)) {
      throw new ProtocolError('BEGIN names pages as current that this destination does not hold');
    }
    heap.present.clearAll();
    heap.present.or(current);
    digest?.retainOnly(current);
    return allocated;
  }

  private awaitUrgent(): Promise<UrgentChannel> {
    if (this.urgent) return Promise.resolve(this.urgent);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new ProtocolError(`no urgent channel within ${URGENT_WAIT_MS} ms`)),
        URGENT_WAIT_MS,
      );
      this.urgentWaiters.push((channel) => {
        clearTimeout(timer);
        resolve(channel);
      });
    });
  }
}

/**
 * Post-copy on the destination: installs pages from the bulk and the urgent channel, whichever
 * comes first, until every page to migrate is present.
 */
async function receiveUntilComplete(
  heap: SecureHeap,
  installer: PageInstaller,
  policy: InstallPolicy,
  bulk: FramedSocket,
  bulkOpener: Opener,
  urgent: () => UrgentChannel,
  allocated: PageBitmap,
): Promise<void> {
  let left = allocated.count() - countPresent(heap, allocated);
  if (left === 0) return;
  await new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (err?: unknown): void => {
      if (done) return;
      done = true;
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve();
    };
    const pump = async (
      next: () => Promise<{ frame: Awaited<ReturnType<FramedSocket['next']>>; opener: Opener }>,
    ) => {
      try {
        while (!done) {
          const { frame, opener } = await next();
          if (done) return;
          if (frame.header.type !== FrameType.Pages) {
            throw new ProtocolError(`unexpected frame type ${frame.header.type} during post-copy`);
          }
          left -= installer.install(frame, opener, policy);
          if (left === 0) finish();
          // Queued frames resolve next() at once, and a chain of resolved promises never lets I/O in:
          // without this, a backlog of bulk frames would hold back a demanded page for its whole length.
          await yieldToEvents();
        }
      } catch (err) {
        if (!done)
          finish(
            err instanceof ChannelClosedError ? new ProtocolError(`post-copy broke: ${err.message}`) : err,
          );
      }
    };
    void pump(async () => ({ frame: await bulk.next(), opener: bulkOpener }));
    void pump(async () => {
      const channel = urgent();
      return { frame: await channel.channel.next(), opener: channel.opener };
    });
  });
}

function countPresent(heap: SecureHeap, pages: PageBitmap): number {
  const both = pages.copy();
  both.and(heap.present);
  return both.count();
}

/**
 * Serves the application thread's misses: each request goes to the source on the urgent channel,
 * once per page until it arrives; the installer's publish wakes the waiting thread.
 */
class Fetcher {
  private readonly requested: PageBitmap;

  constructor(
    private readonly heap: SecureHeap,
    private readonly tracking: { requests: MessagePort; state: Int32Array },
    private readonly urgent: UrgentChannel,
  ) {
    this.requested = heap.present.copy();
    this.requested.clearAll();
    tracking.requests.on('message', (request: FetchRequest) => this.onRequest(request));
  }

  /** Pages will never come: wake every waiter so that its access fails instead of hanging. */
  fail(): void {
    Atomics.store(this.tracking.state, FETCH_FAILED, 1);
    this.heap.present.wakeAll();
    this.close();
  }

  close(): void {
    this.tracking.requests.close();
  }

  private onRequest([first, count]: FetchRequest): void {
    const { heap } = this;
    const end = Math.min(first + count, heap.pageCount);
    for (let page = first; page < end;) {
      // Ask for each run of pages that are neither present nor already asked for, in bounded pieces.
      if (heap.present.get(page) || this.requested.get(page)) {
        page++;
        continue;
      }
      let runEnd = page + 1;
      while (
        runEnd < end &&
        runEnd - page < MAX_FETCH_PAGES &&
        !heap.present.get(runEnd) &&
        !this.requested.get(runEnd)
      ) {
        runEnd++;
      }
      this.requested.setRange(page, runEnd - page);
      const fetch = { t: 'fetch' as const, first: page, count: runEnd - page };
      sendControl(this.urgent.channel, this.urgent.sealer, fetch).catch(() => {});
      page = runEnd;
    }
  }
}

function summarise(stats: TrackerStats | null): ControlOf<'commit'>['faults'] {
  if (!stats) return null;
  const sorted = [...stats.latenciesUs].sort((a, b) => a - b);
  const at = (q: number): number =>
    sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return {
    tracker: stats.kind,
    count: stats.faults,
    p50Us: at(0.5),
    p99Us: at(0.99),
    maxUs: sorted.at(-1) ?? 0,
  };
}

/**
 * START must carry a valid token over the page count and the metadata this side received. Returns
 * the metadata digest (COMMIT binds it too).
 */
function checkStart(tokens: TokenVerifier, start: ControlOf<'start'>, begin: ControlOf<'begin'>): Buffer {
  const metadata = metadataDigest(begin, start.snapshot);
  if (metadata.toString('hex') !== start.metadataDigest) {
    throw new TokenError('START names other metadata than this destination received');
  }
  tokens.checkStart(start.token, { pagesTotal: start.pagesTotal, metadataDigest: metadata });
  if (start.pagesTotal !== begin.allocatedPages) {
    throw new ProtocolError(
      `page count mismatch: announced ${begin.allocatedPages}, START names ${start.pagesTotal}`,
    );
  }
  return metadata;
}

function parseSnapshot(json: string): AppSnapshot {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new ProtocolError('the application snapshot is not JSON');
  }
  const parsed = snapshotSchema.safeParse(value);
  if (!parsed.success) {
    throw new ProtocolError(`malformed application snapshot: ${parsed.error.issues[0]?.message}`);
  }
  return parsed.data;
}

const snapshotSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]));

/**
 * Writes one byte into each page the source announced, so the kernel backs them now rather than
 * during the blackout or a fault. The pages are not present: nothing reads them until they are installed.
 */
function prefaultPages(heap: SecureHeap, allocated: PageBitmap): number {
  let pages = 0;
  for (const { first, count } of extentsOf(allocated, heap, SEGMENT_PAGES)) {
    const view = heap.rawPages(first, count);
    for (let offset = 0; offset < view.length; offset += PAGE_SIZE) view[offset] = 0;
    pages += count;
  }
  return pages;
}

/** One migration over one connection, with no further connection to attach (stop-and-copy, pre-copy). */
export function migrateIn(deps: DestinationDeps, socket: net.Socket): Promise<DestinationOutcome> {
  return new IncomingMigration(deps).run(socket);
}

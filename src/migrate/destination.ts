import type net from 'node:net';
import { setImmediate as yieldToEvents } from 'node:timers/promises';
import { z } from 'zod';
import type { AppSnapshot } from '../apps/app.js';
import { handshake, type SessionKeys } from '../crypto/handshake.js';
import type { Sealer } from '../crypto/seal.js';
import { decodeBitmap, encodeBitmap } from '../heap/bitmap-codec.js';
import { PAGE_SIZE, SEGMENT_PAGES } from '../heap/constants.js';
import { PageBitmap, warmUpBitmapCode } from '../heap/page-bitmap.js';
import { PageSetDigest } from '../heap/page-set-digest.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import type { TeeBackend } from '../tee/backend.js';
import type { AttestationPolicy } from '../tee/policy.js';
import { latencyHistogram } from '../trackers/demand-latency.js';
import type { Tracker, TrackerStats } from '../trackers/tracker.js';
import { trackerFor } from '../trackers/tracker-for.js';
import { monotonicMs } from '../util/clock.js';
import { collectGarbage } from '../util/collect-garbage.js';
import { errorMessage } from '../util/errors.js';
import { FrameType } from '../wire/frame.js';
import { ChannelClosedError, FramedSocket } from '../wire/framed-socket.js';
import { openControl, ProtocolError, sendControl } from './control-channel.js';
import { extentsOf } from './extents.js';
import { type ControlOf, MAX_FETCH_PAGES } from './messages.js';
import { metadataDigest } from './metadata-digest.js';
import type { MigratingApp } from './migrating-app.js';
import { copiesEverythingInBlackout, hasPostcopy } from './modes.js';
import { type InstallPolicy, PageInstaller } from './page-installer.js';
import { cpuMark, cpuSince, peakRssBytes } from './resources.js';
import { TokenError, TokenMinter, TokenVerifier } from './tokens.js';
import { acceptChannel, type Channel, type ChannelName, firstChannel } from './link.js';

export interface DestinationDeps {
  heap: SecureHeap;
  app: MigratingApp;
  appKind: string;
  tee: TeeBackend;
  policy: AttestationPolicy;
  /** The application serves here from now on (before COMMIT in post-copy). */
  onResumed: () => void;
  log?: (message: string) => void;
}

/**
 * Until it resumes, the destination can always refuse, and tells the source so, which may then serve
 * again; once the application serves here, the source must never run again.
 */
export type DestinationOutcome =
  | { kind: 'resumed'; resumedAtMs: number; pagesInstalled: number; commitDelivered: boolean }
  /**
   * Post-copy failed after the application resumed here: pages are missing for good (the source or
   * the network is gone). The application cannot be completed: with the Access Tracker accesses to
   * missing pages fail; the Fault Tracker halted the application (`applicationHalted`).
   */
  | { kind: 'incomplete'; message: string; pagesMissing: number; applicationHalted: boolean }
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
/**
 * After START, how long a broken channel is waited for (the source dials it again), and how long
 * after COMMIT a reconnecting source is still answered. Longer than the source's own budget.
 */
const RECONNECT_WINDOW_MS = 90_000;

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
 * the connections the source opens later: the urgent channel of post-copy, and after a network cut,
 * the bulk and urgent channels of the next generation. On a new bulk channel the destination first
 * says which pages it holds (RESYNC), and repeats COMMIT if it had already sent it, so a COMMIT lost
 * with a connection is delivered by the next one.
 */
export class IncomingMigration {
  private phase: DestinationPhase = 'handshake';
  private keys: SessionKeys | undefined;
  private readonly channels: { bulk?: Channel; urgent?: Channel } = {};
  private channelWaiters: (() => void)[] = [];
  private readonly parked: net.Socket[] = [];
  /** Set at START: the pages to migrate. */
  private allocated: PageBitmap | undefined;
  private fetcher: Fetcher | undefined;
  private tracker: Tracker | undefined;
  private commit: ControlOf<'commit'> | undefined;
  /** After COMMIT, a reconnecting source is answered until then. */
  private lingerUntil = Infinity;

  constructor(private readonly deps: DestinationDeps) {}

  /**
   * The enclave is being stopped while pages may still be missing: every access waiting for one ends
   * now (the Access Tracker fails it, the Fault Tracker halts the application), so stopping never
   * waits on a page.
   */
  abandon(): void {
    this.tracker?.fail();
  }

  /** A further connection for this migration (the host routed it here by its ticket). */
  attach(socket: net.Socket): void {
    if (monotonicMs() > this.lingerUntil) {
      socket.destroy();
      return;
    }
    if (!this.keys) {
      this.parked.push(socket);
      return;
    }
    acceptChannel(socket, this.keys).then(
      (channel) => this.replace(channel),
      (err: unknown) => {
        // Not a connection of this migration: closed unread, the migration goes on.
        this.deps.log?.(`refused a connection for this migration: ${errorMessage(err)}`);
      },
    );
  }

  private replace(channel: Channel): void {
    const current = this.channels[channel.name];
    if (current && current.generation >= channel.generation) {
      channel.channel.destroy();
      return;
    }
    current?.channel.destroy();
    this.channels[channel.name] = channel;
    for (const waiter of this.channelWaiters.splice(0)) waiter();
    if (channel.name === 'urgent') this.fetcher?.rerequest(channel);
    if (channel.name === 'bulk' && this.allocated) void this.resync(channel);
  }

  /** Tells a reconnected source what is here; repeats COMMIT if it is out already. */
  private async resync(bulk: Channel): Promise<void> {
    const held = this.allocated!.copy();
    held.and(this.deps.heap.present);
    try {
      await sendControl(bulk.channel, bulk.sealer, { t: 'resync', present: encodeBitmap(held) });
      if (this.commit) {
        await sendControl(bulk.channel, bulk.sealer, this.commit);
        await bulk.channel.end();
      }
    } catch {
      // This connection broke too; the source dials again.
    }
  }

  /** Waits until `name` is a channel newer than `generation`; rejects after `ms`. */
  private newerChannel(name: ChannelName, generation: number, ms: number): Promise<Channel> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new ProtocolError(`the ${name} channel did not come back within ${ms} ms`));
      }, ms);
      const check = (): void => {
        const channel = this.channels[name];
        if (channel && channel.generation > generation) {
          clearTimeout(timer);
          resolve(channel);
        } else this.channelWaiters.push(check);
      };
      check();
    });
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
      const first = firstChannel(channel, keys);
      this.channels.bulk = first;
      for (const parked of this.parked.splice(0)) this.attach(parked);
      sealer = first.sealer;
      const { opener } = first;
      minter = new TokenMinter(keys.ownTokenKey, keys.migrationId);
      const tokens = new TokenVerifier(keys.peerTokenKey, keys.migrationId);
      this.phase = 'prefault';

      const prefault = openControl(await channel.next(), opener);
      if (prefault.t !== 'prefault') throw new ProtocolError(`expected PREFAULT, got '${prefault.t}'`);
      if (hasPostcopy(prefault.mode) && !heap.catchesMisses) {
        throw new ProtocolError(
          `${prefault.mode} needs a tracker; this destination was prepared without one`,
        );
      }
      // Every page arrives before the application runs: nothing to catch, and pages decrypt in place.
      if (!hasPostcopy(prefault.mode)) heap.releaseUserfaultfd();
      // BEGIN names the pages to migrate as their change from these.
      const announced = decodeBitmap(prefault.allocated, heap.pageCount);
      // Prefaulting costs ~2-4 µs per page before the blackout, with the source waiting: worth it only
      // where the first touch would otherwise fall inside the blackout.
      const pages = copiesEverythingInBlackout(prefault.mode) ? prefaultPages(heap, announced) : 0;
      const digest = prefault.verify ? new PageSetDigest(heap.pageCount) : null;
      // What BEGIN and START make this thread do to the page sets runs compiled then, not cold.
      warmUpBitmapCode(heap.pageCount);
      digest?.retainOnly(heap.present);
      collectGarbage();
      await sendControl(channel, sealer, { t: 'prefaulted', pages });
      this.phase = 'receiving';

      const installer = new PageInstaller(heap, digest, (first, count) => {
        heap.present.publishRange(first, count);
        this.tracker?.installed(first, count);
      });
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
          allocated = this.checkBegin(begin, prefault, announced, digest);
          policy = { kind: 'final', epoch: begin.epoch, allocated };
          continue;
        }
        if (message.t !== 'start' || !begin) {
          throw new ProtocolError(`unexpected '${message.t}' while receiving pages`);
        }
        start = message;
      }

      this.phase = 'resuming';
      const metadata = checkStart(tokens, start, prefault.allocated, begin!);
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
      if (postcopy) await this.newerChannel('urgent', 0, URGENT_WAIT_MS);

      // Pages that are not to migrate hold nothing the application may read: usable as they are.
      const unallocated = allocated!.copy();
      unallocated.invert();
      // The application thread has not restored yet: nobody can be waiting on these words.
      heap.present.setAllBeforeWaiters(unallocated);
      this.allocated = allocated;

      // In post-copy, pages flow from here on: restoring the application already faults on some.
      let receiving: Promise<void> | undefined;
      if (postcopy) {
        policy = { kind: 'live', epoch: begin!.epoch, allocated: allocated! };
        const fetcher = new Fetcher(heap, this.channels.urgent!);
        this.fetcher = fetcher;
        this.tracker = trackerFor(heap, {
          allocated: allocated!,
          demand: (first, count) => fetcher.request(first, count),
          haltApplication: () =>
            this.deps.app.halt('pages cannot be restored: the migration failed before they arrived'),
        });
        receiving = this.receiveUntilComplete(installer, policy, allocated!);
        // No waiting access may hang, or go on as if its page had come.
        receiving.catch(() => this.tracker!.fail());
      }
      // Serve goes right behind restore: the application thread serves once restored, without a round
      // trip to this thread in between (and refuses to if restoring failed).
      const restored = this.deps.app.restore(parseSnapshot(start.snapshot), this.tracker?.bindThread());
      const serving = this.deps.app.serve();
      serving.catch(() => {});
      await restored;
      // From here on this side serves: it must never mint an ABORT token again.
      this.phase = 'resumed';
      const { servingAtMs: resumedAtMs } = await serving;
      this.deps.onResumed();
      if (postcopy) {
        const urgent = this.channels.urgent!;
        // Lost with a broken link, it is not needed: the source pushes again after RESYNC anyway.
        sendControl(urgent.channel, urgent.sealer, { t: 'resumed' }).catch(() => {});
      }

      let faults: ControlOf<'commit'>['faults'] = null;
      if (receiving) {
        try {
          await receiving;
        } catch (err) {
          // Closing every connection, and refusing new ones, is how the source learns to stop.
          this.lingerUntil = 0;
          this.channels.bulk?.channel.destroy();
          this.channels.urgent?.channel.destroy();
          const left = allocated!.count() - allocated!.countAnd(heap.present);
          return {
            kind: 'incomplete',
            message: errorMessage(err),
            pagesMissing: left,
            applicationHalted: this.tracker!.kind === 'fault',
          };
        }
        faults = summarise(this.tracker!.finish());
        await this.deps.app.untrack();
      }

      const ownDigest = digest?.hex() ?? null;
      const pagesInstalled = allocated!.count();
      const usage = cpuSince(cpu);
      this.commit = {
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
      };
      this.lingerUntil = monotonicMs() + RECONNECT_WINDOW_MS;
      let commitDelivered = true;
      try {
        const bulk = this.channels.bulk!;
        await sendControl(bulk.channel, bulk.sealer, this.commit);
        await bulk.channel.end();
      } catch {
        // The application already serves here. A source that missed COMMIT dials again and gets it
        // on the new connection; until then it stays paused, never running.
        commitDelivered = false;
      }
      return { kind: 'resumed', resumedAtMs, pagesInstalled, commitDelivered };
    } catch (err) {
      const message = errorMessage(err);
      this.lingerUntil = 0;
      // An application thread may wait on a page (restoring faults): it must neither hang nor go on.
      this.tracker?.fail();
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
      this.channels.urgent?.channel.destroy();
      return { kind: 'aborted', message, abortToken };
    }
  }

  /**
   * Post-copy: installs pages from the bulk and the urgent channel, whichever comes first, until every
   * page to migrate is present. A channel that breaks is waited for (the source dials it again).
   */
  private async receiveUntilComplete(
    installer: PageInstaller,
    policy: InstallPolicy,
    allocated: PageBitmap,
  ): Promise<void> {
    let left = allocated.count() - allocated.countAnd(this.deps.heap.present);
    if (left === 0) return;
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (err?: unknown): void => {
        if (done) return;
        done = true;
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve();
      };
      const pump = async (name: ChannelName): Promise<void> => {
        let channel = this.channels[name]!;
        while (!done) {
          let frame;
          try {
            frame = await channel.channel.next();
          } catch (err) {
            if (done) return;
            if (!(err instanceof ChannelClosedError)) throw err;
            channel = await this.newerChannel(name, channel.generation, RECONNECT_WINDOW_MS);
            continue;
          }
          if (done) return;
          if (frame.header.type !== FrameType.Pages) {
            throw new ProtocolError(`unexpected frame type ${frame.header.type} during post-copy`);
          }
          left -= installer.install(frame, channel.opener, policy);
          if (left === 0) finish();
          // Queued frames resolve next() at once, and a chain of resolved promises never lets I/O in:
          // without this, a backlog of bulk frames would hold back a demanded page for its whole length.
          await yieldToEvents();
          // A newer generation replaced this channel while it was being read: read the new one.
          if (this.channels[name]!.generation > channel.generation) channel = this.channels[name]!;
        }
      };
      pump('bulk').catch(finish);
      pump('urgent').catch(finish);
    });
  }

  /**
   * BEGIN names the pages to migrate (as their change from those PREFAULT `announced`) and those
   * already current here. Pages received in rounds that are stale, or no longer allocated, stop being
   * present (and leave the digest); they come again.
   */
  private checkBegin(
    begin: ControlOf<'begin'>,
    { mode, verify }: ControlOf<'prefault'>,
    announced: PageBitmap,
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
    const allocated = decodeBitmap(begin.allocatedChange, heap.pageCount);
    allocated.xor(announced);
    const current = decodeBitmap(begin.current, heap.pageCount);
    if (allocated.count() !== begin.allocatedPages) {
      throw new ProtocolError(`BEGIN announces ${begin.allocatedPages} pages but names ${allocated.count()}`);
    }
    if (!current.isSubsetOf(allocated) || !current.isSubsetOf(heap.present)) {
      throw new ProtocolError('BEGIN names pages as current that this destination does not hold');
    }
    // Nothing received is stale in most blackouts (post-copy has received nothing yet): skip the
    // heap-sized copies dropping would make.
    if (!heap.present.isSubsetOf(current)) {
      const stale = heap.present.copy();
      stale.andNot(current);
      heap.dropPages(stale);
    }
    digest?.retainOnly(current);
    return allocated;
  }
}

/**
 * Serves the tracker's demands: each goes to the source on the urgent channel, once per page until
 * it arrives; installing the page wakes the waiting thread.
 */
class Fetcher {
  private readonly requested: PageBitmap;

  constructor(
    private readonly heap: SecureHeap,
    private urgent: Channel,
  ) {
    this.requested = PageBitmap.create(heap.pageCount);
  }

  request(first: number, count: number): void {
    this.send(first, count, false);
  }

  /** A new urgent channel: what was asked for and has not arrived may have been lost; ask again. */
  rerequest(urgent: Channel): void {
    this.urgent = urgent;
    const outstanding = this.requested.copy();
    outstanding.andNot(this.heap.present);
    this.requested.clearAll();
    for (const { first, count } of this.heap.runs(outstanding, MAX_FETCH_PAGES))
      this.send(first, count, true);
  }

  private send(first: number, count: number, again: boolean): void {
    const { heap } = this;
    const end = Math.min(first + count, heap.pageCount);
    for (let page = first; page < end;) {
      // Ask for each run of pages that are neither present nor already asked for, in bounded pieces.
      if (heap.present.get(page) || (!again && this.requested.get(page))) {
        page++;
        continue;
      }
      let runEnd = page + 1;
      while (
        runEnd < end &&
        runEnd - page < MAX_FETCH_PAGES &&
        !heap.present.get(runEnd) &&
        (again || !this.requested.get(runEnd))
      ) {
        runEnd++;
      }
      this.requested.setRange(page, runEnd - page);
      const fetch = { t: 'fetch' as const, first: page, count: runEnd - page };
      // A send on a broken channel fails quietly: the next generation asks again (rerequest).
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
    histogram: latencyHistogram(sorted),
  };
}

/**
 * START must carry a valid token over the page count and the metadata this side received. Returns
 * the metadata digest (COMMIT binds it too).
 */
function checkStart(
  tokens: TokenVerifier,
  start: ControlOf<'start'>,
  prefaultAllocated: string,
  begin: ControlOf<'begin'>,
): Buffer {
  const metadata = metadataDigest(prefaultAllocated, begin, start.snapshot);
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
 * during the blackout or a fault. The pages are not present: nothing reads them until they are
 * installed. Not on a userfaultfd heap: a touch there would fault on this thread, and UFFDIO_COPY
 * allocates each page as it installs it anyway.
 */
function prefaultPages(heap: SecureHeap, allocated: PageBitmap): number {
  if (heap.userfaultfd) return 0;
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

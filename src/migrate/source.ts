import { handshake, type SessionKeys } from '../crypto/handshake.js';
import type { MigrationProgress } from '../enclave/ipc.js';
import { allocatedBitmapOf } from '../heap/allocator-layout.js';
import { decodeBitmap, encodeBitmap } from '../heap/bitmap-codec.js';
import { PAGE_SIZE } from '../heap/constants.js';
import { PageBitmap, warmUpBitmapCode } from '../heap/page-bitmap.js';
import { PageSetDigest } from '../heap/page-set-digest.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import type { TeeBackend } from '../tee/backend.js';
import type { AttestationPolicy } from '../tee/policy.js';
import { collectGarbage } from '../util/collect-garbage.js';
import { monotonicMs } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { FramedSocket } from '../wire/framed-socket.js';
import { RateLimiter } from '../wire/rate-limiter.js';
import { ProtocolError, receiveControl, sendControl } from './control-channel.js';
import { extentsOf } from './extents.js';
import type { ControlMessage } from './messages.js';
import { metadataDigest } from './metadata-digest.js';
import type { MigratingApp } from './migrating-app.js';
import { hasPostcopy, hasPrecopy, type MigrationMode } from './modes.js';
import { type PageSink, sendExtent } from './page-frames.js';
import { PostcopyPusher } from './postcopy-pusher.js';
import { type PrecopyResult, runPrecopy } from './precopy.js';
import { ProgressTicker } from './progress.js';
import type { MigrationReport, PhaseTimes } from './report.js';
import { cpuMark, cpuSince, peakRssBytes } from './resources.js';
import { TokenError, TokenMinter, TokenVerifier } from './tokens.js';
import { type Channel, type DataTarget, dialData, firstChannel, openChannel } from './link.js';
import { isLinkFailure, LinkStalledError, SourceLink } from './source-link.js';

export interface SourceDeps {
  heap: SecureHeap;
  app: MigratingApp;
  appKind: string;
  tee: TeeBackend;
  policy: AttestationPolicy;
  log?: (message: string) => void;
  abortRelay?: AbortRelay;
}

export interface MigrateOutRequest {
  mode: MigrationMode;
  dataHost: string;
  dataPort: number;
  ticket: string;
  /** The source host's MAC over the ticket for the destination's peer port; opaque to the enclave. */
  peerAuth: string;
  verify: boolean;
  /** CLOCK_MONOTONIC ms at which the operator's request reached the source host (PREPARE began). */
  requestedAtMs: number;
  maxDowntimeMs: number;
  bandwidthBps: number | null;
  reconnectTimeoutMs: number;
}

/**
 * Where ABORT tokens relayed by the hosts reach a migration in progress: a destination that gave up
 * after START, when the link is what broke, has no other way to release the source. Only a token
 * that verifies counts; `offer` returns why one does not.
 */
export class AbortRelay {
  private accept: ((token: string) => void) | null = null;

  offer(token: string): string | null {
    if (!this.accept) return 'no migration is waiting for an ABORT token';
    try {
      this.accept(token);
      return null;
    } catch (err) {
      return errorMessage(err);
    }
  }

  /** Called by the migration once it can check tokens; `onValid` ends it. */
  bind(check: (token: string) => void, onValid: () => void): void {
    this.accept = (token) => {
      check(token);
      onValid();
    };
  }

  unbind(): void {
    this.accept = null;
  }
}

/** What the enclave knows; the host adds where it went (enclaveId, from, to) and the demo the client gap. */
export type EnclaveReport = Omit<
  MigrationReport,
  'enclaveId' | 'from' | 'to' | 'clientGapMs' | 'trackerReason'
>;

/**
 * Source phases. Before START the application may always serve again; after START only an explicit
 * abort from the destination (sent before it resumed) lets it, otherwise the outcome is in doubt and
 * the application stays paused: two running copies are worse than a stalled one (DESIGN.md §2.4).
 */
export type SourcePhase =
  | 'connecting'
  | 'handshake'
  | 'precopy'
  | 'blackout'
  /** START sent; the destination runs and pages still flow (post-copy and hybrid). */
  | 'postcopy'
  /** START sent; only COMMIT or ABORT can come. */
  | 'awaiting-commit';

const afterStart = (phase: SourcePhase): boolean => phase === 'postcopy' || phase === 'awaiting-commit';

export type SourceOutcome =
  | { kind: 'committed'; report: EnclaveReport }
  | { kind: 'aborted'; message: string }
  /**
   * START went out and neither a valid COMMIT nor a valid ABORT came back. The application stays
   * paused; `tokens` can still check an ABORT token the destination minted (relayed by the hosts),
   * which is the only way back to serving.
   */
  | { kind: 'in-doubt'; message: string; tokens: TokenVerifier };

/**
 * The destination first-touches every allocated page before it answers PREFAULT (3-10 µs per page
 * measured here); allow several times that on top of a fixed margin. Without a bound, a network that
 * swallows the answer would hold the enclave in 'migrating-out' for ever; nothing has stopped yet, so
 * giving up costs nothing but a retry.
 */
const PREFAULT_BASE_MS = 5000;
const PREFAULT_MS_PER_PAGE = 0.03;
/** Pre-copy gives up iterating after this many rounds; hybrid hands over to post-copy sooner. */
const PRECOPY_MAX_ROUNDS = 8;
const HYBRID_MAX_ROUNDS = 2;
/** Once every page is sent, COMMIT must come within this, or the link is taken for broken. */
const COMMIT_WAIT_MS = 15_000;
/** After a reconnection, the destination says what it holds first. */
const RESYNC_WAIT_MS = 10_000;

export async function migrateOut(
  deps: SourceDeps,
  req: MigrateOutRequest,
  onProgress: (p: MigrationProgress) => void,
): Promise<SourceOutcome> {
  const { heap, app } = deps;
  const t0 = req.requestedAtMs;
  const phases: Partial<PhaseTimes> = { prepare: 0 };
  const mark = (name: keyof PhaseTimes): number => {
    const now = monotonicMs();
    phases[name] = now - t0;
    return now;
  };
  const cpu = cpuMark();
  const ticker = new ProgressTicker(onProgress, t0);
  const limit = req.bandwidthBps === null ? RateLimiter.unlimited : new RateLimiter(req.bandwidthBps);
  let phase: SourcePhase = 'connecting';
  let paused = false;
  let channel: FramedSocket | undefined;
  let urgent: Channel | undefined;
  let link: SourceLink | undefined;
  let clientsGone: Promise<void> | undefined;
  const log = (message: string) => deps.log?.(message);
  let pusher: PostcopyPusher | undefined;
  let answer: PendingAnswer | undefined;
  let tokens: TokenVerifier | undefined;
  try {
    channel = await dialData(dataTarget(req));

    phase = 'handshake';
    mark('handshake');
    ticker.report('handshake', 0, 0, true);
    const keys = await handshake({ role: 'source', channel, tee: deps.tee, policy: deps.policy });
    const first = firstChannel(channel, keys);
    const sink: PageSink = first;
    const { opener } = first;
    const minter = new TokenMinter(keys.ownTokenKey, keys.migrationId);
    tokens = new TokenVerifier(keys.peerTokenKey, keys.migrationId);
    const verifier = tokens;
    const relayed = new Promise<never>((_, reject) => {
      deps.abortRelay?.bind(
        (token) => verifier.checkAbort(token),
        () =>
          reject(
            new DestinationAbort('the destination never resumed (its ABORT token came through the hosts)'),
          ),
      );
    });
    relayed.catch(() => {});

    const allocated = allocatedBitmapOf(heap);
    // A copy: `allocated` is a view of the live heap, and BEGIN names its changes from what was sent here.
    const announced = allocated.copy();
    const announcedText = encodeBitmap(announced);
    await sendControl(channel, sink.sealer, {
      t: 'prefault',
      allocated: announcedText,
      mode: req.mode,
      verify: req.verify,
    });
    const prefaultMs = Math.ceil(PREFAULT_BASE_MS + PREFAULT_MS_PER_PAGE * allocated.count());
    const prefaulting = receiveControl(channel, opener, {
      ms: prefaultMs,
      awaiting: 'answer to PREFAULT',
    });
    prefaulting.catch(() => {});
    // While the destination answers, so that it adds nothing to the migration's time.
    if (!hasPrecopy(req.mode)) warmUpBlackout(allocated, announced, null);
    const prefaulted = await prefaulting;
    if (prefaulted.t === 'abort') throw new DestinationAbort(prefaulted.reason);
    if (prefaulted.t !== 'prefaulted') throw new ProtocolError(`expected PREFAULTED, got '${prefaulted.t}'`);
    mark('prefaulted');
    // The destination may refuse at any moment (a page failed to verify): watch for its answer while
    // sending, so an abort stops the transfer with its reason instead of a broken pipe.
    answer = new PendingAnswer(receiveControl(channel, opener));
    if (hasPostcopy(req.mode)) {
      // A destination that is gone never answers the new connection: its answer (or the first
      // connection closing) ends the wait at once instead of after the attach timeout.
      const opening = openChannel(dataTarget(req), keys, 'urgent', 1);
      try {
        urgent = await Promise.race([opening, answer.promise.then(refusalOf)]);
      } catch (err) {
        opening.then(
          (late) => late.channel.destroy(),
          () => {},
        );
        throw err;
      }
    }
    const digest = req.verify ? new PageSetDigest(heap.pageCount) : null;
    let bytesSent = 0;
    let firstSendAtMs: number | null = null;
    const sent = (bytes: number): void => {
      firstSendAtMs ??= monotonicMs();
      bytesSent += bytes;
      answer!.throwIfAnswered();
    };

    let precopy: PrecopyResult | null = null;
    const precopyTotal = allocated.count() * PAGE_SIZE;
    if (hasPrecopy(req.mode)) {
      phase = 'precopy';
      precopy = await runPrecopy(
        {
          heap,
          app,
          allocated,
          sink,
          digest,
          limit,
          onRound: (round, pagesLeft) => ticker.report('precopy', 0, pagesLeft * PAGE_SIZE, true, { round }),
          onBytes: (bytes) => {
            sent(bytes);
            ticker.report('precopy', bytesSent, precopyTotal, false, {
              round: precopy?.rounds,
            });
          },
        },
        {
          maxDowntimeMs: req.maxDowntimeMs,
          maxRounds: req.mode === 'hybrid' ? HYBRID_MAX_ROUNDS : PRECOPY_MAX_ROUNDS,
        },
      );
    }

    // Right before the pause: rounds can run long enough for V8 to drop code compiled before them.
    if (precopy) warmUpBlackout(allocated, announced, precopy.current);
    collectGarbage();
    phase = 'blackout';
    const paused_ = await app.pause();
    paused = true;
    const stoppedAtMs = paused_.pausedAtMs;
    phases.blackout = stoppedAtMs - t0;
    // After the pause nothing writes: this epoch is the last, and `allocated` is final.
    const lastDirty = new PageBitmap(paused_.dirty, heap.pageCount);
    const { toMigrate, pending, allocatedPages, encoded } = blackoutSets(
      allocated,
      announced,
      precopy?.current ?? null,
      lastDirty,
      digest,
    );
    const bytesTotal = allocatedPages * PAGE_SIZE;
    const epoch = (precopy?.rounds ?? 0) + 1;
    const begin = {
      mode: req.mode,
      app: deps.appKind,
      heapBytes: heap.byteLength,
      allocatedPages,
      verify: req.verify,
      epoch,
      ...encoded,
    };
    await sendControl(channel, sink.sealer, { t: 'begin', ...begin });

    // Post-copy sends only what restoring the application reads, before START: a demand fetch there
    // would cost a round trip between the enclaves, all of it downtime.
    const beforeStart = hasPostcopy(req.mode)
      ? new PageBitmap(paused_.restorePages, heap.pageCount)
      : pending;
    beforeStart.and(pending);
    for (const { first, count } of extentsOf(beforeStart, heap)) {
      sent(await sendExtent(sink, heap, first, count, epoch, digest));
      ticker.report('transfer', bytesSent, bytesTotal);
    }
    pending.andNot(beforeStart);
    const transferDoneAtMs = mark('transferDone');
    ticker.report('resume', bytesSent, bytesTotal, true);

    const snapshot = JSON.stringify(paused_.snapshot);
    const metadata = metadataDigest(announcedText, begin, snapshot);
    // Without post-copy every page is hashed by now; with it the digest completes during the push and
    // COMMIT carries the destination's.
    const digestAtStart = hasPostcopy(req.mode) ? null : (digest?.hex() ?? null);
    await sendControl(channel, sink.sealer, {
      t: 'start',
      snapshot,
      stoppedAtMs,
      pagesTotal: allocatedPages,
      framesTotal: sink.sealer.framesSealed,
      metadataDigest: metadata.toString('hex'),
      digest: digestAtStart,
      token: minter.start({ pagesTotal: allocatedPages, metadataDigest: metadata }),
    });
    const startSentAtMs = mark('startSent');
    // Clients waiting here would wait for COMMIT; closed now, they find the destination at once. Not
    // awaited before serving fetches: the destination's first faults come right away.
    clientsGone = app.disconnect();
    clientsGone.catch(() => {});

    link = new SourceLink(dataTarget(req), keys, first, urgent, req.reconnectTimeoutMs, log);
    if (hasPostcopy(req.mode)) {
      phase = 'postcopy';
      pusher = new PostcopyPusher(heap, toMigrate, pending, sink, urgent!, epoch, digest, limit, () =>
        ticker.report('postcopy', bytesTotal - pusher!.pagesLeft * PAGE_SIZE, bytesTotal, false, {
          faultsServed: pusher!.stats.fetchesServed,
        }),
      );
    } else {
      phase = 'awaiting-commit';
    }
    const reply = await Promise.race([awaitAnswer(link, pusher, answer.promise, heap.pageCount), relayed]);
    const postcopyDoneAtMs = monotonicMs();
    phase = 'awaiting-commit';
    pusher?.stop();
    if (reply.t === 'abort') {
      tokens.checkAbort(reply.token);
      throw new DestinationAbort(reply.reason);
    }
    if (reply.t !== 'commit') throw new ProtocolError(`expected COMMIT, got '${reply.t}'`);
    await clientsGone;
    const sourceDigest = digest?.hex() ?? null;
    checkCommit(tokens, reply, { pagesSent: allocatedPages, metadata, sourceDigest });
    const committedAtMs = mark('committed');
    phases.resumed = reply.resumedAtMs - t0;
    ticker.report('commit', bytesTotal, bytesTotal, true);

    const ownCpu = cpuSince(cpu);
    const sendEnd = hasPostcopy(req.mode) ? postcopyDoneAtMs : transferDoneAtMs;
    const report: EnclaveReport = {
      migrationId: keys.migrationId.toString('hex'),
      app: deps.appKind,
      mode: req.mode,
      tee: deps.tee.describe(),
      teeSecure: deps.tee.secure,
      heapBytes: heap.byteLength,
      allocatedBytes: bytesTotal,
      pagesTransferred:
        bytesSent / PAGE_SIZE + (pusher ? pusher.stats.pagesPushed + pusher.stats.pagesFetched : 0),
      framesTransferred: sink.sealer.framesSealed + (urgent?.sealer.framesSealed ?? 0),
      bytesOnWire:
        channel.bytesRead +
        channel.bytesWritten +
        (urgent ? urgent.channel.bytesRead + urgent.channel.bytesWritten : 0),
      reconnects: link.reconnects,
      downtimeMs: reply.resumedAtMs - stoppedAtMs,
      totalMs: committedAtMs - t0,
      throughputMBps: bytesTotal / 1e6 / Math.max((sendEnd - (firstSendAtMs ?? stoppedAtMs)) / 1000, 1e-9),
      precopyRounds: precopy?.rounds ?? 0,
      precopyStop: precopy?.stopReason ?? null,
      dirtyRateMBps: precopy ? precopy.dirtyRateBps / 1e6 : null,
      demandFaults: reply.faults?.count ?? 0,
      faultLatencyUs:
        reply.faults && reply.faults.count > 0
          ? {
              p50: reply.faults.p50Us,
              p99: reply.faults.p99Us,
              max: reply.faults.maxUs,
              histogram: reply.faults.histogram,
            }
          : null,
      tracker: reply.faults?.tracker ?? null,
      postcopyMs: hasPostcopy(req.mode) ? committedAtMs - startSentAtMs : null,
      pagesFetched: pusher?.stats.pagesFetched ?? 0,
      pagesPushed: pusher?.stats.pagesPushed ?? 0,
      sourcePeakRssBytes: peakRssBytes(),
      destinationPeakRssBytes: reply.peakRssBytes,
      sourceCpuMs: ownCpu.userMs + ownCpu.systemMs,
      destinationCpuMs: reply.cpuUserMs + reply.cpuSystemMs,
      verified: sourceDigest !== null && sourceDigest === reply.digest,
      sourceDigest,
      destinationDigest: reply.digest,
      startedAt: new Date(Date.now() - (monotonicMs() - t0)).toISOString(),
      phases: phases as PhaseTimes,
    };
    wipeKeys(keys);
    await selfDestroy(deps);
    return { kind: 'committed', report };
  } catch (err) {
    pusher?.stop();
    if (!afterStart(phase)) {
      if (paused) await app.serve();
      return { kind: 'aborted', message: errorMessage(answer?.abortReason() ?? err) };
    }
    // After START only a verified ABORT token lets the application serve again (checked above).
    if (err instanceof DestinationAbort) {
      await clientsGone?.catch(() => {});
      await app.reconnect();
      await app.serve();
      return { kind: 'aborted', message: err.message };
    }
    const message = `${errorMessage(err)} (START was sent; the application stays paused)`;
    return { kind: 'in-doubt', message, tokens: tokens! };
  } finally {
    deps.abortRelay?.unbind();
    link?.stop();
    channel?.destroy();
    urgent?.channel.destroy();
  }
}

/**
 * After START: the destination's answer (COMMIT, or ABORT if it refused START), while post-copy
 * pages flow. A broken link is dialled again (SourceLink); the destination then says which pages it
 * holds (RESYNC) and the push resumes with what is missing. Only a failure no new connection can cure
 * reaches the caller, and leaves the source in doubt.
 */
async function awaitAnswer(
  link: SourceLink,
  pusher: PostcopyPusher | undefined,
  firstAnswer: Promise<ControlMessage>,
  pageCount: number,
): Promise<ControlMessage> {
  let answer = firstAnswer;
  for (;;) {
    try {
      return await oneGeneration(link, pusher, answer);
    } catch (err) {
      if (!isLinkFailure(err)) throw err;
      await link.redial();
      const resync = await receiveControl(link.bulk.channel, link.bulk.opener, {
        ms: RESYNC_WAIT_MS,
        awaiting: 'RESYNC',
      });
      if (resync.t !== 'resync') throw new ProtocolError(`expected RESYNC, got '${resync.t}'`);
      pusher?.resync(decodeBitmap(resync.present, pageCount));
      answer = receiveControl(link.bulk.channel, link.bulk.opener);
    }
  }
}

async function oneGeneration(
  link: SourceLink,
  pusher: PostcopyPusher | undefined,
  answer: Promise<ControlMessage>,
): Promise<ControlMessage> {
  answer.catch(() => {});
  const commitWait = () =>
    new Promise<never>((_, reject) => {
      setTimeout(
        () => reject(new LinkStalledError(`no COMMIT within ${COMMIT_WAIT_MS} ms of the last page`)),
        COMMIT_WAIT_MS,
      ).unref();
    });
  if (!pusher) return Promise.race([answer, commitWait()]);
  pusher.use(link.bulk, link.urgent!);
  const serving = pusher.serveFetches();
  serving.catch(() => {});
  const pushed = pusher.push();
  pushed.catch(() => {});
  const first = await Promise.race([pushed.then(() => null), answer, serving.then(() => null)]);
  if (first !== null) return first;
  return Promise.race([answer, serving.then(() => answer), commitWait()]);
}

/**
 * The page sets of the blackout: what to migrate (allocated now, sent as its change from what PREFAULT
 * announced), what the destination already holds current (sent in a round and not written since), and
 * what is still to send. Forgets, in the digest, pages that were sent but are no longer to migrate or
 * no longer current.
 */
function blackoutSets(
  allocated: PageBitmap,
  announced: PageBitmap,
  precopyCurrent: PageBitmap | null,
  lastDirty: PageBitmap,
  digest: PageSetDigest | null,
): {
  toMigrate: PageBitmap;
  pending: PageBitmap;
  allocatedPages: number;
  /** BEGIN's two bitmaps, compressed. */
  encoded: { allocatedChange: string; current: string };
} {
  const toMigrate = allocated.copy();
  const current = precopyCurrent ?? PageBitmap.create(allocated.pageCount);
  current.andNot(lastDirty);
  current.and(toMigrate);
  digest?.retainOnly(current);
  const pending = toMigrate.copy();
  pending.andNot(current);
  const change = toMigrate.copy();
  change.xor(announced);
  const encoded = { allocatedChange: encodeBitmap(change), current: encodeBitmap(current) };
  return { toMigrate, pending, allocatedPages: toMigrate.count(), encoded };
}

/**
 * Runs the blackout's arithmetic on the bitmaps once, on scratch copies, so that it runs compiled in
 * the blackout: cold, it costs milliseconds per GiB of heap, all of them downtime.
 */
function warmUpBlackout(
  allocated: PageBitmap,
  announced: PageBitmap,
  precopyCurrent: PageBitmap | null,
): void {
  blackoutSets(
    allocated,
    announced,
    precopyCurrent?.copy() ?? null,
    PageBitmap.create(allocated.pageCount),
    null,
  );
  warmUpBitmapCode(allocated.pageCount);
}

function dataTarget(req: MigrateOutRequest): DataTarget {
  return { host: req.dataHost, port: req.dataPort, ticket: req.ticket, peerAuth: req.peerAuth };
}

function wipeKeys(keys: SessionKeys): void {
  for (const key of [keys.sendKey, keys.recvKey, keys.ownTokenKey, keys.peerTokenKey, keys.channelSecret]) {
    key.fill(0);
  }
}

/**
 * COMMIT must carry a valid token over exactly what was sent; anything else leaves the outcome in
 * doubt (the source neither serves nor destroys itself).
 */
function checkCommit(
  tokens: TokenVerifier,
  commit: Extract<ControlMessage, { t: 'commit' }>,
  sent: { pagesSent: number; metadata: Buffer; sourceDigest: string | null },
): void {
  tokens.checkCommit(commit.token, {
    pagesInstalled: commit.pagesInstalled,
    metadataDigest: sent.metadata,
    contentDigest: commit.digest === null ? null : Buffer.from(commit.digest, 'hex'),
  });
  if (commit.pagesInstalled !== sent.pagesSent || commit.digest !== sent.sourceDigest) {
    throw new TokenError(
      `COMMIT names ${commit.pagesInstalled} pages and digest ${commit.digest}, but ${sent.pagesSent} pages with digest ${sent.sourceDigest} were sent`,
    );
  }
}

/** Any answer of the destination before START is a refusal. */
function refusalOf(message: ControlMessage): never {
  throw message.t === 'abort'
    ? new DestinationAbort(message.reason)
    : new ProtocolError(`'${message.t}' from the destination before START`);
}

/** The destination refused to resume and said so before resuming, so the source may serve again. */
class DestinationAbort extends Error {
  override name = 'DestinationAbort';
  constructor(reason: string) {
    super(`destination aborted: ${reason}`);
  }
}

/** The destination's one answer after the transfer began: COMMIT, or an abort (possibly early). */
class PendingAnswer {
  private settled: ControlMessage | Error | null = null;

  constructor(readonly promise: Promise<ControlMessage>) {
    promise.then(
      (message) => {
        this.settled = message;
      },
      (err: unknown) => {
        this.settled = err instanceof Error ? err : new Error(String(err));
      },
    );
  }

  /** Called between extents: the destination answered before the transfer ended, so it refused. */
  throwIfAnswered(): void {
    if (this.settled === null) return;
    throw this.abortReason() ?? new ProtocolError('destination answered before the transfer ended');
  }

  abortReason(): DestinationAbort | null {
    const settled = this.settled;
    return settled !== null && !(settled instanceof Error) && settled.t === 'abort'
      ? new DestinationAbort(settled.reason)
      : null;
  }
}

/** After COMMIT the source must never serve again: drop clients, zero the heap (Gu et al., DSN'17). */
async function selfDestroy(deps: SourceDeps): Promise<void> {
  await deps.app.close();
  deps.heap.wipe();
}

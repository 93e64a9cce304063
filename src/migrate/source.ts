import net from 'node:net';
import type { EnclaveApp } from '../apps/app.js';
import { handshake } from '../crypto/handshake.js';
import { Opener, Sealer } from '../crypto/seal.js';
import type { MigrationProgress } from '../enclave/ipc.js';
import type { HeapAllocator } from '../heap/allocator.js';
import { PAGE_SIZE } from '../heap/constants.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import type { TeeBackend } from '../tee/backend.js';
import type { AttestationPolicy } from '../tee/policy.js';
import { monotonicMs } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import { FrameType } from '../wire/frame.js';
import { FramedSocket } from '../wire/framed-socket.js';
import { encodePreamble } from '../wire/preamble.js';
import { ContentDigest } from './content-digest.js';
import { ProtocolError, receiveControl, sendControl } from './control-channel.js';
import { extentsOf } from './extents.js';
import type { ControlMessage } from './messages.js';
import { metadataDigest } from './metadata-digest.js';
import type { MigrationMode } from './modes.js';
import { ProgressTicker } from './progress.js';
import type { MigrationReport, PhaseTimes } from './report.js';
import { cpuMark, cpuSince, peakRssBytes } from './resources.js';
import { TokenError, TokenMinter, TokenVerifier } from './tokens.js';

export interface SourceDeps {
  heap: SecureHeap;
  allocator: HeapAllocator;
  app: EnclaveApp;
  appKind: string;
  tee: TeeBackend;
  policy: AttestationPolicy;
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
}

/** What the enclave knows; the host adds where it went (enclaveId, from, to) and the demo the client gap. */
export type EnclaveReport = Omit<MigrationReport, 'enclaveId' | 'from' | 'to' | 'clientGapMs'>;

/**
 * Source phases. Before START the application may always serve again; after START only an explicit
 * abort from the destination (sent before it resumed) lets it, otherwise the outcome is in doubt and
 * the application stays paused: two running copies are worse than a stalled one (DESIGN.md §2.4).
 */
export type SourcePhase = 'connecting' | 'handshake' | 'blackout' | 'awaiting-commit';

export type SourceOutcome =
  | { kind: 'committed'; report: EnclaveReport }
  | { kind: 'aborted'; message: string }
  /**
   * START went out and neither a valid COMMIT nor a valid ABORT came back. The application stays
   * paused; `tokens` can still check an ABORT token the destination minted (relayed by the hosts),
   * which is the only way back to serving.
   */
  | { kind: 'in-doubt'; message: string; tokens: TokenVerifier };

const CONNECT_TIMEOUT_MS = 10_000;
/**
 * The destination first-touches every allocated page before it answers PREFAULT (3-10 µs per page
 * measured here); allow several times that on top of a fixed margin. Without a bound, a network that
 * swallows the answer would hold the enclave in 'migrating-out' for ever; nothing has stopped yet, so
 * giving up costs nothing but a retry.
 */
const PREFAULT_BASE_MS = 5000;
const PREFAULT_MS_PER_PAGE = 0.03;

function connect(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(
      () => socket.destroy(new Error(`timed out connecting to ${host}:${port}`)),
      CONNECT_TIMEOUT_MS,
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

export async function migrateOut(
  deps: SourceDeps,
  req: MigrateOutRequest,
  onProgress: (p: MigrationProgress) => void,
): Promise<SourceOutcome> {
  const t0 = req.requestedAtMs;
  const phases: Partial<PhaseTimes> = { prepare: 0 };
  const mark = (name: keyof PhaseTimes): number => {
    const now = monotonicMs();
    phases[name] = now - t0;
    return now;
  };
  const cpu = cpuMark();
  const ticker = new ProgressTicker(onProgress, t0);
  let phase: SourcePhase = 'connecting';
  let paused = false;
  let socket: net.Socket | undefined;
  let answer: PendingAnswer | undefined;
  let tokens: TokenVerifier | undefined;
  try {
    socket = await connect(req.dataHost, req.dataPort);
    socket.write(encodePreamble(req.ticket, req.peerAuth));
    const channel = new FramedSocket(socket);

    phase = 'handshake';
    mark('handshake');
    ticker.report('handshake', 0, 0, true);
    const keys = await handshake({ role: 'source', channel, tee: deps.tee, policy: deps.policy });
    const sealer = new Sealer(keys.sendKey, keys.migrationId);
    const opener = new Opener(keys.recvKey, keys.migrationId);
    const minter = new TokenMinter(keys.ownTokenKey, keys.migrationId);
    tokens = new TokenVerifier(keys.peerTokenKey, keys.migrationId);

    const { words } = deps.allocator.allocated;
    const bitmap = Buffer.from(words.buffer, words.byteOffset, words.byteLength).toString('base64');
    await sendControl(channel, sealer, { t: 'prefault', allocated: bitmap });
    const prefaultMs = Math.ceil(PREFAULT_BASE_MS + PREFAULT_MS_PER_PAGE * deps.allocator.allocated.count());
    const prefaulted = await receiveControl(channel, opener, {
      ms: prefaultMs,
      awaiting: 'answer to PREFAULT',
    });
    if (prefaulted.t === 'abort') throw new DestinationAbort(prefaulted.reason);
    if (prefaulted.t !== 'prefaulted') throw new ProtocolError(`expected PREFAULTED, got '${prefaulted.t}'`);
    mark('prefaulted');

    phase = 'blackout';
    deps.app.pause();
    paused = true;
    const stoppedAtMs = mark('blackout');
    const allocated = deps.allocator.allocated;
    const allocatedPages = allocated.count();
    const bytesTotal = allocatedPages * PAGE_SIZE;
    const begin = {
      mode: req.mode,
      app: deps.appKind,
      heapBytes: deps.heap.byteLength,
      allocatedPages,
      verify: req.verify,
    };
    await sendControl(channel, sealer, { t: 'begin', ...begin });

    // The destination may refuse at any moment (a page failed to verify): watch for its answer while
    // sending, so an abort stops the transfer with its reason instead of a broken pipe.
    answer = new PendingAnswer(receiveControl(channel, opener));
    const digest = req.verify ? new ContentDigest() : null;
    let pagesSent = 0;
    let framesSent = 0;
    for (const { first, count } of extentsOf(allocated, deps.heap)) {
      const pages = deps.heap.rawPages(first, count);
      digest?.update(first, count, pages);
      await channel.send(sealer.seal({ type: FrameType.Pages, firstPage: first, pageCount: count }, pages));
      answer.throwIfAnswered();
      pagesSent += count;
      framesSent++;
      ticker.report('transfer', pagesSent * PAGE_SIZE, bytesTotal);
    }
    const transferDoneAtMs = mark('transferDone');
    ticker.report('resume', bytesTotal, bytesTotal, true);

    const sourceDigest = digest?.hex() ?? null;
    const snapshot = JSON.stringify(deps.app.snapshot());
    const metadata = metadataDigest(begin, snapshot);
    await sendControl(channel, sealer, {
      t: 'start',
      snapshot,
      stoppedAtMs,
      pagesTotal: pagesSent,
      framesTotal: framesSent,
      metadataDigest: metadata.toString('hex'),
      digest: sourceDigest,
      token: minter.start({ pagesTotal: pagesSent, metadataDigest: metadata }),
    });
    phase = 'awaiting-commit';
    mark('startSent');

    const reply = await answer.promise;
    if (reply.t === 'abort') {
      tokens.checkAbort(reply.token);
      throw new DestinationAbort(reply.reason);
    }
    if (reply.t !== 'commit') throw new ProtocolError(`expected COMMIT, got '${reply.t}'`);
    checkCommit(tokens, reply, { pagesSent, metadata, sourceDigest });
    mark('committed');
    phases.resumed = reply.resumedAtMs - t0;
    ticker.report('commit', bytesTotal, bytesTotal, true);

    const ownCpu = cpuSince(cpu);
    const report: EnclaveReport = {
      migrationId: keys.migrationId.toString('hex'),
      app: deps.appKind,
      mode: req.mode,
      tee: deps.tee.describe(),
      teeSecure: deps.tee.secure,
      heapBytes: deps.heap.byteLength,
      allocatedBytes: bytesTotal,
      pagesTransferred: pagesSent,
      framesTransferred: framesSent,
      bytesOnWire: channel.bytesRead + channel.bytesWritten,
      downtimeMs: reply.resumedAtMs - stoppedAtMs,
      totalMs: (phases.committed ?? 0) - phases.prepare!,
      throughputMBps: bytesTotal / 1e6 / Math.max((transferDoneAtMs - stoppedAtMs) / 1000, 1e-9),
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
    for (const key of [keys.sendKey, keys.recvKey, keys.ownTokenKey, keys.peerTokenKey]) key.fill(0);
    await selfDestroy(deps);
    return { kind: 'committed', report };
  } catch (err) {
    if (phase !== 'awaiting-commit') {
      if (paused) deps.app.serve();
      return { kind: 'aborted', message: errorMessage(answer?.abortReason() ?? err) };
    }
    // After START only a verified ABORT token lets the application serve again (checked above).
    if (err instanceof DestinationAbort) {
      deps.app.serve();
      return { kind: 'aborted', message: err.message };
    }
    const message = `${errorMessage(err)} (START was sent; the application stays paused)`;
    return { kind: 'in-doubt', message, tokens: tokens! };
  } finally {
    socket?.destroy();
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

import type net from 'node:net';
import { z } from 'zod';
import type { AppSnapshot, EnclaveApp } from '../apps/app.js';
import { handshake } from '../crypto/handshake.js';
import { Opener, Sealer } from '../crypto/seal.js';
import { PAGE_SIZE, SEGMENT_PAGES } from '../heap/constants.js';
import { bitmapWords, PageBitmap } from '../heap/page-bitmap.js';
import type { SecureHeap } from '../heap/secure-heap.js';
import type { TeeBackend } from '../tee/backend.js';
import type { AttestationPolicy } from '../tee/policy.js';
import { monotonicMs } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import { FrameType } from '../wire/frame.js';
import { FramedSocket } from '../wire/framed-socket.js';
import { ContentDigest } from './content-digest.js';
import { openControl, ProtocolError, sendControl } from './control-channel.js';
import { extentsOf } from './extents.js';
import type { ControlOf } from './messages.js';
import { metadataDigest } from './metadata-digest.js';
import { cpuMark, cpuSince, peakRssBytes } from './resources.js';
import { TokenError, TokenMinter, TokenVerifier } from './tokens.js';

export interface DestinationDeps {
  heap: SecureHeap;
  app: EnclaveApp;
  appKind: string;
  tee: TeeBackend;
  policy: AttestationPolicy;
  /** Re-opens allocator state from the heap pages that arrived (HeapAllocator.attach). */
  attachHeap: () => void;
}

/**
 * Until it resumes, the destination can always refuse, and tells the source so, which may then serve
 * again; once the application serves here, the source must never run again.
 */
export type DestinationOutcome =
  | { kind: 'resumed'; resumedAtMs: number; pagesInstalled: number; commitDelivered: boolean }
  /**
   * Never resumed and never will. `abortToken` (null if the handshake did not finish) lets a source
   * that already sent START serve again; it was sent on the channel, and the runtime also hands it
   * to its host in case the channel was gone.
   */
  | { kind: 'aborted'; message: string; abortToken: string | null };

/** Destination phases; an ABORT token can be minted in every phase but the last. */
export type DestinationPhase = 'handshake' | 'prefault' | 'receiving' | 'resuming' | 'resumed';

/**
 * After sending an abort, keep reading (and dropping) what the source still sends until it closes:
 * closing with unread data would reset the connection, and a reset can destroy the abort in flight.
 */
const ABORT_LINGER_MS = 5000;

async function discardUntilClosed(channel: FramedSocket, timeoutMs: number): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    for (;;) await channel.next(signal);
  } catch {
    // closed by the source, or the linger time is over
  }
}

/** Upper bound on pages in one frame; a larger claim is a protocol violation, not an allocation. */
const MAX_FRAME_PAGES = 4096;

export async function migrateIn(deps: DestinationDeps, socket: net.Socket): Promise<DestinationOutcome> {
  const { heap } = deps;
  const channel = new FramedSocket(socket);
  const cpu = cpuMark();
  let phase: DestinationPhase = 'handshake';
  let sealer: Sealer | undefined;
  let minter: TokenMinter | undefined;
  try {
    const keys = await handshake({ role: 'destination', channel, tee: deps.tee, policy: deps.policy });
    sealer = new Sealer(keys.sendKey, keys.migrationId);
    const opener = new Opener(keys.recvKey, keys.migrationId);
    minter = new TokenMinter(keys.ownTokenKey, keys.migrationId);
    const tokens = new TokenVerifier(keys.peerTokenKey, keys.migrationId);
    phase = 'prefault';

    const prefault = openControl(await channel.next(), opener);
    if (prefault.t !== 'prefault') throw new ProtocolError(`expected PREFAULT, got '${prefault.t}'`);
    const pages = prefaultPages(heap, Buffer.from(prefault.allocated, 'base64'));
    await sendControl(channel, sealer, { t: 'prefaulted', pages });

    const begin = openControl(await channel.next(), opener);
    if (begin.t !== 'begin') throw new ProtocolError(`expected BEGIN, got '${begin.t}'`);
    if (begin.heapBytes !== heap.byteLength) {
      throw new ProtocolError(
        `heap size mismatch: source ${begin.heapBytes} B, destination ${heap.byteLength} B`,
      );
    }
    if (begin.app !== deps.appKind)
      throw new ProtocolError(`application mismatch: '${begin.app}' vs '${deps.appKind}'`);
    phase = 'receiving';

    const digest = begin.verify ? new ContentDigest() : null;
    let pagesInstalled = 0;
    let start: ControlOf<'start'> | undefined;
    while (!start) {
      const frame = await channel.next();
      if (frame.header.type === FrameType.Pages) {
        const { firstPage: first, pageCount: count } = frame.header;
        checkPageFrame(heap, first, count, frame.bodyLength);
        const target = heap.rawPages(first, count);
        opener.open(frame, target);
        heap.present.setRange(first, count);
        digest?.update(first, count, target);
        pagesInstalled += count;
        continue;
      }
      const message = openControl(frame, opener);
      if (message.t !== 'start') throw new ProtocolError(`unexpected '${message.t}' while receiving pages`);
      start = message;
    }

    phase = 'resuming';
    const metadata = checkStart(tokens, start, begin, pagesInstalled);
    const ownDigest = digest?.hex() ?? null;
    if (ownDigest !== start.digest) {
      throw new ProtocolError(`content digest mismatch: source ${start.digest}, destination ${ownDigest}`);
    }

    // Pages that were never allocated did not travel; they hold nothing, so they are usable as they are.
    heap.present.setAll();
    deps.attachHeap();
    deps.app.restore(parseSnapshot(start.snapshot));
    // From here on this side serves: it must never mint an ABORT token again.
    phase = 'resumed';
    deps.app.serve();
    const resumedAtMs = monotonicMs();

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
    const abortToken = phase === 'resumed' ? null : (minter?.abort() ?? null);
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
  }
}

/**
 * START must carry a valid token over the page count and the metadata this side received, and the
 * page count must be what arrived. Returns the metadata digest (COMMIT binds it too).
 */
function checkStart(
  tokens: TokenVerifier,
  start: ControlOf<'start'>,
  begin: ControlOf<'begin'>,
  pagesInstalled: number,
): Buffer {
  const metadata = metadataDigest(begin, start.snapshot);
  if (metadata.toString('hex') !== start.metadataDigest) {
    throw new TokenError('START names other metadata than this destination received');
  }
  tokens.checkStart(start.token, { pagesTotal: start.pagesTotal, metadataDigest: metadata });
  if (start.pagesTotal !== pagesInstalled || pagesInstalled !== begin.allocatedPages) {
    throw new ProtocolError(
      `page count mismatch: announced ${begin.allocatedPages}, START names ${start.pagesTotal}, installed ${pagesInstalled}`,
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
 * during the blackout. The pages are not present: nothing reads them until they are installed.
 */
function prefaultPages(heap: SecureHeap, bitmapBytes: Buffer): number {
  if (bitmapBytes.length !== bitmapWords(heap.pageCount) * 4) {
    throw new ProtocolError(
      `prefault bitmap of ${bitmapBytes.length} B does not fit ${heap.pageCount} pages`,
    );
  }
  const words = new Uint32Array(bitmapWords(heap.pageCount));
  new Uint8Array(words.buffer).set(bitmapBytes);
  let pages = 0;
  for (const { first, count } of extentsOf(new PageBitmap(words, heap.pageCount), heap, SEGMENT_PAGES)) {
    const view = heap.rawPages(first, count);
    for (let offset = 0; offset < view.length; offset += PAGE_SIZE) view[offset] = 0;
    pages += count;
  }
  return pages;
}

function checkPageFrame(heap: SecureHeap, first: number, count: number, bodyLength: number): void {
  if (count < 1 || count > MAX_FRAME_PAGES || first + count > heap.pageCount) {
    throw new ProtocolError(`page frame out of range: pages ${first}+${count} of ${heap.pageCount}`);
  }
  if (bodyLength !== count * PAGE_SIZE + 16) {
    throw new ProtocolError(`page frame length ${bodyLength} does not match ${count} pages`);
  }
  if (heap.present.countRange(first, count) !== 0) {
    throw new ProtocolError(`page ${first}+${count} received twice`);
  }
}

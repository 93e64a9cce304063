// First: it must run before any schema is built.
import '../util/zod-jitless.js';
import { parentPort } from 'node:worker_threads';
import pino from 'pino';
import { restorePagesOf } from '../apps/app.js';
import { createApp, type MigratableApp } from '../apps/registry.js';
import { HeapAllocator } from '../heap/allocator.js';
import { PAGE_SIZE } from '../heap/constants.js';
import { warmUpBitmapCode } from '../heap/page-bitmap.js';
import { SecureHeap } from '../heap/secure-heap.js';
import { attachTracker } from '../trackers/attach.js';
import { monotonicMs } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { AppCall, AppReply, AppRequest, AppResults, AppWorkerData } from './app-thread-protocol.js';

/**
 * The application thread: the application and its allocator run here, on the shared SecureHeap, so
 * that a tracker can block this thread on a missing page while the I/O thread keeps receiving pages.
 * Requests are handled one at a time between application events, which is what makes `pause` and
 * `take-dirty` quiescent: no command is half-done when they run.
 */
/** The heap and the application, from the first request on ('open'). */
interface Opened {
  heap: SecureHeap;
  app: MigratableApp;
}
let opened: Opened | undefined;
let allocator: HeapAllocator | undefined;
let detachTracker: (() => void) | undefined;
/** Whether the application port is bound (disconnect releases it; reconnect binds it again). */
let listening = false;
/**
 * A destination queues `serve` right behind `restore` (no round trip in between): once restoring
 * failed, the application must never serve here.
 */
let restoreFailed = false;

function open(config: AppWorkerData): void {
  if (opened) throw new Error('the application thread is already open');
  const log = pino({ base: config.logBase }, pino.destination(2));
  const heap = SecureHeap.fromShared(config.heap);
  const app = createApp(config.kind, {
    heap,
    get allocator(): HeapAllocator {
      if (!allocator) throw new Error('the heap has not been formatted or restored yet');
      return allocator;
    },
    bindAddress: config.bindAddress,
    port: config.port,
    log: (msg, fields) => log.info(fields ?? {}, msg),
  });
  opened = { heap, app };
}

function stats({ heap, app }: Opened): Record<string, number> {
  const base: Record<string, number> = { heapBytes: heap.byteLength };
  if (allocator) base.allocatedBytes = allocator.stats().allocatedPages * PAGE_SIZE;
  return { ...base, ...app.stats() };
}

async function handle(request: AppRequest): Promise<AppResults[AppRequest['op']]> {
  if (request.op === 'open') {
    open(request.config);
    return {};
  }
  // A thread that was never opened has nothing to close (an enclave stopped before it was told what to run).
  if (!opened) {
    if (request.op === 'close') return {};
    throw new Error(`'${request.op}' before the application thread was opened`);
  }
  const { heap, app } = opened;
  switch (request.op) {
    case 'start-fresh':
      allocator = HeapAllocator.format(heap);
      app.format();
      if (request.fillBytes > 0) app.fill(request.fillBytes);
      // The fill is not a change a migration has to track: every page goes in the first round anyway.
      heap.dirty.clearAll();
      await app.listen();
      listening = true;
      app.serve();
      return { stats: stats(opened) };
    case 'listen':
      // A destination: the allocator counts its bitmap on first use, right after the blackout; compiled
      // by then.
      warmUpBitmapCode(heap.pageCount);
      await app.listen();
      listening = true;
      return {};
    case 'pause': {
      app.pause();
      const pausedAtMs = monotonicMs();
      return {
        pausedAtMs,
        snapshot: app.snapshot(),
        words: heap.dirty.take().words,
        restorePages: restorePagesOf(heap, app).words,
      };
    }
    case 'serve':
      if (restoreFailed) throw new Error('not serving: restoring the application failed');
      app.serve();
      return { servingAtMs: monotonicMs() };
    case 'restore':
      try {
        if (request.tracking) detachTracker = attachTracker(heap, request.tracking);
        allocator = HeapAllocator.attach(heap);
        app.restore(request.snapshot);
      } catch (err) {
        restoreFailed = true;
        throw err;
      }
      return {};
    case 'take-dirty': {
      const { words } = heap.dirty.take();
      return { words };
    }
    case 'untrack':
      detachTracker?.();
      detachTracker = undefined;
      return {};
    case 'disconnect':
      listening = false;
      await app.disconnect();
      return {};
    case 'reconnect':
      if (!listening) await app.listen();
      listening = true;
      return {};
    case 'stats':
      return { stats: stats(opened) };
    case 'close':
      await app.close();
      return {};
  }
}

parentPort!.on('message', (call: AppCall) => {
  const reply = (message: AppReply, transfer: ArrayBuffer[] = []) =>
    parentPort!.postMessage(message, transfer);
  handle(call).then(
    (result) => {
      const words = (result as { words?: Uint32Array }).words;
      reply({ id: call.id, ok: true, result }, words ? [words.buffer as ArrayBuffer] : []);
    },
    (err: unknown) => reply({ id: call.id, ok: false, message: errorMessage(err) }),
  );
});

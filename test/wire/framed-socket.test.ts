import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Frame, FrameError, FrameType, plainFrame } from '../../src/wire/frame.js';
import { ChannelClosedError, FramedSocket } from '../../src/wire/framed-socket.js';
import { tcpPair } from './tcp-pair.js';

const MiB = 2 ** 20;

function frameParts(body: Buffer, seq = 0, type = FrameType.Pages): Buffer[] {
  return plainFrame(type, body, seq);
}

const bodyOf = (frame: Frame): Buffer => Buffer.concat(frame.body);

describe('FramedSocket over loopback TCP', { timeout: 20_000 }, () => {
  test('carries many frames both ways, in order and intact', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const a = new FramedSocket(client);
      const b = new FramedSocket(server);
      const bodies = Array.from({ length: 500 }, (_, i) => randomBytes((i * 7919) % 70_000));
      const sending = (async () => {
        for (const [i, body] of bodies.entries()) await a.send(frameParts(body, i));
      })();
      const replying = (async () => {
        for (const [i, body] of bodies.entries()) {
          const frame = await b.next();
          assert.equal(frame.header.seq, i);
          assert.deepEqual(bodyOf(frame), body);
          await b.send(frameParts(body.subarray(0, 16), i));
        }
      })();
      for (const [i, body] of bodies.entries()) {
        const echo = await a.next();
        assert.equal(echo.header.seq, i);
        assert.deepEqual(bodyOf(echo), body.subarray(0, 16));
      }
      await Promise.all([sending, replying]);
      const total = bodies.reduce((sum, body) => sum + 32 + body.length, 0);
      assert.equal(a.bytesWritten, total);
      assert.equal(b.bytesRead, total);
      assert.equal(b.remoteAddress, '127.0.0.1');
    } finally {
      close();
    }
  });

  test('calls written only once the socket is done with a frame: reusing the memory then corrupts nothing', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const a = new FramedSocket(client);
      const b = new FramedSocket(server);
      const free: Buffer[] = [];
      let writtenCalls = 0;
      const frames = 48;
      const sending = (async () => {
        for (let i = 0; i < frames; i++) {
          const body = free.pop() ?? Buffer.alloc(MiB / 2);
          body.fill(i + 1);
          await a.send(frameParts(body, i), () => {
            writtenCalls++;
            // What a pool does with memory it gets back: hands it out again, overwritten.
            body.fill(0xff);
            free.push(body);
          });
        }
      })();
      // A slow start on the reading side, so that frames queue in the writer while it goes on.
      await sleep(200);
      for (let i = 0; i < frames; i++) {
        const body = bodyOf(await b.next());
        assert.ok(
          body.every((x) => x === i + 1),
          `frame ${i} arrived as written`,
        );
      }
      await sending;
      await sleep(10);
      assert.equal(writtenCalls, frames);
      assert.ok(free.length < frames, 'memory was reused');
    } finally {
      close();
    }
  });

  test('carries 16 MiB bodies', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const a = new FramedSocket(client);
      const b = new FramedSocket(server);
      const body = randomBytes(16 * MiB);
      const digest = createHash('sha256').update(body).digest('hex');
      const sending = Promise.all([a.send(frameParts(body, 1)), a.send(frameParts(body.subarray(5), 2))]);
      const first = await b.next();
      const second = await b.next();
      await sending;
      assert.equal(first.bodyLength, 16 * MiB);
      assert.ok(first.body.length > 1, 'a large body arrives as several slices');
      const hash = createHash('sha256');
      for (const slice of first.body) hash.update(slice);
      assert.equal(hash.digest('hex'), digest);
      assert.equal(second.header.seq, 2);
      assert.deepEqual(bodyOf(second), body.subarray(5));
    } finally {
      close();
    }
  });

  test('back-pressure: a slow reader stalls the writer and bounds memory on both sides', async () => {
    const { client, server, close } = await tcpPair();
    let sample: NodeJS.Timeout | undefined;
    try {
      const maxQueuedBytes = 2 * MiB;
      const frameBytes = MiB;
      const frames = 64;
      const writer = new FramedSocket(client);
      const reader = new FramedSocket(server, { maxQueuedBytes });
      const body = randomBytes(frameBytes);

      let maxWritable = 0;
      let sentFrames = 0;
      sample = setInterval(() => {
        maxWritable = Math.max(maxWritable, client.writableLength);
      }, 1);
      const sending = (async () => {
        for (let i = 0; i < frames; i++) {
          await writer.send(frameParts(body, i));
          maxWritable = Math.max(maxWritable, client.writableLength);
          sentFrames++;
        }
      })();

      // Wait until the writer makes no progress: the reader has paused and the kernel buffers are full.
      let last = -1;
      while (writer.bytesWritten !== last || !server.isPaused()) {
        last = writer.bytesWritten;
        await sleep(150);
      }
      assert.ok(
        sentFrames < frames,
        `writer got ${sentFrames} of ${frames} frames out to a reader that reads nothing`,
      );
      assert.ok(
        reader.bytesRead <= maxQueuedBytes + frameBytes + 32 + 256 * 1024,
        `reader holds ${reader.bytesRead} B unconsumed`,
      );

      for (let i = 0; i < frames; i++) {
        const frame = await reader.next();
        assert.equal(frame.header.seq, i);
        assert.equal(frame.bodyLength, frameBytes);
      }
      await sending;
      assert.equal(sentFrames, frames);
      assert.ok(maxWritable > 0, 'the writer did buffer data');
      assert.ok(maxWritable <= 4 * MiB + frameBytes + 64, `writer buffered up to ${maxWritable} B`);
    } finally {
      clearInterval(sample);
      close();
    }
  });

  test('a frame larger than maxQueuedBytes still gets through', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const a = new FramedSocket(client);
      const b = new FramedSocket(server, { maxQueuedBytes: 64 * 1024 });
      const body = randomBytes(3 * MiB);
      const sending = Promise.all([a.send(frameParts(body, 0)), a.send(frameParts(body, 1))]);
      assert.deepEqual(bodyOf(await b.next()), body);
      assert.deepEqual(bodyOf(await b.next()), body);
      await sending;
    } finally {
      close();
    }
  });

  test('peer end: queued frames are delivered, then ChannelClosedError', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const a = new FramedSocket(client);
      const b = new FramedSocket(server);
      await a.send(frameParts(Buffer.from('last words'), 0));
      await a.end();
      await sleep(50);
      assert.deepEqual(bodyOf(await b.next()), Buffer.from('last words'));
      await assert.rejects(b.next(), ChannelClosedError);
      await assert.rejects(b.next(), ChannelClosedError);
    } finally {
      close();
    }
  });

  test('a pending next() rejects with ChannelClosedError when the peer goes away', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const b = new FramedSocket(server);
      const pending = b.next();
      client.destroy();
      await assert.rejects(pending, ChannelClosedError);
      await assert.rejects(b.send(frameParts(Buffer.alloc(1))), ChannelClosedError);
    } finally {
      close();
    }
  });

  test('the peer closing mid-frame is reported as a closed channel', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const b = new FramedSocket(server);
      const [header, body] = frameParts(Buffer.alloc(100));
      client.end(Buffer.concat([header!, body!.subarray(0, 50)]));
      await assert.rejects(
        b.next(),
        (err: Error) => err instanceof ChannelClosedError && /middle of a frame/.test(err.message),
      );
    } finally {
      close();
    }
  });

  test('local destroy rejects waiters and later sends', async () => {
    const { client, close } = await tcpPair();
    try {
      const a = new FramedSocket(client);
      const pending = a.next();
      a.destroy();
      await assert.rejects(pending, ChannelClosedError);
      await assert.rejects(a.send(frameParts(Buffer.alloc(1))), ChannelClosedError);
      await assert.rejects(a.end(), ChannelClosedError);
      assert.ok(client.destroyed);
    } finally {
      close();
    }
  });

  test('malformed input rejects with FrameError and destroys the socket', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const b = new FramedSocket(server);
      const [header] = frameParts(Buffer.alloc(0));
      header!.writeUInt8(200, 4);
      client.write(header!);
      await assert.rejects(b.next(), FrameError);
      assert.ok(server.destroyed);
      await assert.rejects(b.next(), FrameError);
    } finally {
      close();
    }
  });

  test('an aborted next() does not swallow a later frame', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const a = new FramedSocket(client);
      const b = new FramedSocket(server);
      const controller = new AbortController();
      const abandoned = b.next(controller.signal);
      controller.abort(new Error('gave up'));
      await assert.rejects(abandoned, /gave up/);
      await a.send(frameParts(Buffer.from('kept'), 9));
      const frame = await b.next();
      assert.equal(frame.header.seq, 9);
      assert.deepEqual(bodyOf(frame), Buffer.from('kept'));
    } finally {
      close();
    }
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { splitInlineArgs } from '../../../src/apps/kv/inline-args.js';
import {
  MAX_ARRAY_LENGTH,
  MAX_BULK_LENGTH,
  MAX_INLINE_LENGTH,
  ReplyWriter,
  RespParser,
  RespProtocolError,
} from '../../../src/apps/kv/resp.js';
import { encodeCommand } from '../../helpers/resp-test-client.js';

/** Feeds the chunks one after another and collects every command, as a server loop would. */
function parseChunks(chunks: readonly Buffer[]): string[][] {
  const parser = new RespParser();
  const commands: string[][] = [];
  for (const chunk of chunks) {
    parser.feed(chunk);
    for (let args = parser.next(); args; args = parser.next())
      commands.push(args.map((a) => a.toString('hex')));
  }
  return commands;
}

function protocolError(input: string | Buffer): string {
  const parser = new RespParser();
  parser.feed(typeof input === 'string' ? Buffer.from(input, 'latin1') : input);
  try {
    while (parser.next());
  } catch (err) {
    assert.ok(err instanceof RespProtocolError);
    return err.message;
  }
  assert.fail('no protocol error');
}

const binaryArg = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a));
const command = fc.array(binaryArg, { minLength: 1, maxLength: 6 });

describe('RespParser', () => {
  test('property: splitting the stream at every byte, or anywhere, yields the same commands', () => {
    fc.assert(
      fc.property(
        fc.array(command, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (cmds, cuts) => {
          const stream = Buffer.concat(cmds.map((c) => encodeCommand(c)));
          const expected = cmds.map((c) => c.map((a) => a.toString('hex')));
          assert.deepEqual(parseChunks([stream]), expected);
          const bytes = [...stream].map((b) => Buffer.from([b]));
          assert.deepEqual(parseChunks(bytes), expected);
          const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const pieces = [0, ...points].map((p, i) => stream.subarray(p, [...points, stream.length][i]));
          assert.deepEqual(parseChunks(pieces), expected);
        },
      ),
      { numRuns: 150 },
    );
  });

  test('property: a split stream of inline commands parses like the whole stream', () => {
    const word = fc.stringMatching(/^[a-zA-Z0-9:_-]{1,12}$/);
    fc.assert(
      fc.property(
        fc.array(fc.array(word, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 }),
        (lines) => {
          const stream = Buffer.from(lines.map((l) => `${l.join(' ')}\r\n`).join(''));
          const expected = lines.map((l) => l.map((w) => Buffer.from(w).toString('hex')));
          assert.deepEqual(parseChunks([...stream].map((b) => Buffer.from([b]))), expected);
        },
      ),
      { numRuns: 100 },
    );
  });

  test('returns every pipelined command of one chunk in order, then null', () => {
    const parser = new RespParser();
    parser.feed(
      Buffer.concat([encodeCommand(['SET', 'a', '1']), encodeCommand(['GET', 'a']), Buffer.from('PING\r\n')]),
    );
    assert.deepEqual(parser.next()?.map(String), ['SET', 'a', '1']);
    assert.deepEqual(parser.next()?.map(String), ['GET', 'a']);
    assert.deepEqual(parser.next()?.map(String), ['PING']);
    assert.equal(parser.next(), null);
    assert.equal(parser.bufferedBytes, 0);
  });

  test('parses inline commands: LF or CRLF, runs of spaces, quotes, blank lines skipped', () => {
    assert.deepEqual(
      parseChunks([Buffer.from("PING\r\n\r\n  SET  k   v \nECHO \"a b\\x41\\n\" 'it\\'s'\n")]),
      [['PING'], ['SET', 'k', 'v'], ['ECHO', 'a bA\n', "it's"]].map((c) =>
        c.map((a) => Buffer.from(a).toString('hex')),
      ),
    );
  });

  test('keeps binary values intact: CR, LF, NUL and high bytes inside a bulk', () => {
    const value = Buffer.from([0, 13, 10, 255, 36, 42, 13, 10, 0]);
    const parser = new RespParser();
    parser.feed(encodeCommand(['SET', 'bin', value]));
    assert.deepEqual(parser.next()?.[2], value);
  });

  test('returns views into the received chunk, not copies', () => {
    const chunk = encodeCommand(['SET', 'key', 'value']);
    const parser = new RespParser();
    parser.feed(chunk);
    const args = parser.next()!;
    chunk[chunk.length - 3] = 0x21; // the last byte of "value"
    assert.equal(args[2]!.toString(), 'valu!');
  });

  test('assembles a 1 MiB bulk sent in 1 KiB chunks only once all of it arrived', () => {
    const value = Buffer.alloc(1 << 20, 7);
    const stream = encodeCommand(['SET', 'big', value]);
    const parser = new RespParser();
    for (let offset = 0; offset < stream.length; offset += 1024) {
      parser.feed(stream.subarray(offset, offset + 1024));
      const args = parser.next();
      if (offset + 1024 < stream.length) assert.equal(args, null);
      else assert.deepEqual(args?.[2], value);
    }
  });

  test('ignores empty multibulk requests (*0 and *-1)', () => {
    assert.deepEqual(parseChunks([Buffer.from('*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n')]), [
      [Buffer.from('PING').toString('hex')],
    ]);
  });

  test('reports the protocol errors Redis reports', () => {
    assert.equal(protocolError('*abc\r\n'), 'Protocol error: invalid multibulk length');
    assert.equal(protocolError(`*${MAX_ARRAY_LENGTH + 1}\r\n`), 'Protocol error: invalid multibulk length');
    assert.equal(protocolError('*+1\r\n'), 'Protocol error: invalid multibulk length');
    assert.equal(protocolError('*2\r\n:1\r\n'), "Protocol error: expected '$', got ':'");
    assert.equal(protocolError('*1\r\n$-1\r\n'), 'Protocol error: invalid bulk length');
    assert.equal(protocolError('*1\r\n$01\r\n'), 'Protocol error: invalid bulk length');
    assert.equal(protocolError(`*1\r\n$${MAX_BULK_LENGTH + 1}\r\n`), 'Protocol error: invalid bulk length');
    assert.equal(protocolError('*1\r\n$2\r\nabcd\r\n'), 'Protocol error: expected CRLF after bulk payload');
    assert.equal(protocolError('SET "unclosed\r\n'), 'Protocol error: unbalanced quotes in request');
    assert.equal(protocolError('SET "a"b\r\n'), 'Protocol error: unbalanced quotes in request');
    assert.equal(protocolError('x'.repeat(MAX_INLINE_LENGTH + 1)), 'Protocol error: too big inline request');
    assert.equal(
      protocolError(`*${'1'.repeat(MAX_INLINE_LENGTH + 1)}`),
      'Protocol error: too big mbulk count string',
    );
    assert.equal(
      protocolError(`*1\r\n$${'1'.repeat(MAX_INLINE_LENGTH + 1)}`),
      'Protocol error: too big bulk count string',
    );
  });

  test('accepts a bulk of exactly the maximum length header and waits for its payload', () => {
    const parser = new RespParser();
    parser.feed(Buffer.from(`*1\r\n$${MAX_BULK_LENGTH}\r\n`));
    assert.equal(parser.next(), null);
  });

  test('returns the commands before a protocol error, then fails for good', () => {
    const parser = new RespParser();
    parser.feed(Buffer.concat([encodeCommand(['PING']), Buffer.from('*x\r\n'), encodeCommand(['PING'])]));
    assert.deepEqual(parser.next()?.map(String), ['PING']);
    assert.throws(() => parser.next(), RespProtocolError);
    assert.throws(() => parser.next(), /invalid multibulk length/);
  });
});

describe('splitInlineArgs', () => {
  test('splits like sdssplitargs and rejects unbalanced quotes', () => {
    const split = (s: string) =>
      splitInlineArgs(Buffer.from(s, 'latin1'))?.map((a) => a.toString('latin1')) ?? null;
    assert.deepEqual(split('a "b c" \'d e\''), ['a', 'b c', 'd e']);
    assert.deepEqual(split('"\\x4a\\x4B\\xZZ\\t"'), ['JKxZZ\t']);
    assert.deepEqual(split("'a\\nb'"), ['a\\nb']);
    assert.deepEqual(split('pre"fix"'), ['prefix']);
    assert.deepEqual(split('""'), ['']);
    assert.deepEqual(split('   '), []);
    assert.equal(split('"abc'), null);
    assert.equal(split("'abc"), null);
    assert.equal(split('"abc"d'), null);
  });
});

describe('ReplyWriter', () => {
  test('encodes every reply type into one buffer', () => {
    const out = new ReplyWriter();
    assert.equal(out.isEmpty, true);
    out.simple('OK');
    out.error('ERR bad\r\nthing');
    out.integer(-42);
    out.integer(2n ** 63n - 1n);
    out.bulk(Buffer.from([0, 13, 10]));
    out.bulk('héllo');
    out.bulk(null);
    out.nullBulk();
    out.arrayHeader(2);
    out.bulk('');
    out.bulk(Buffer.alloc(5000, 1));
    const bytes = out.take();
    assert.equal(out.isEmpty, true);
    const expected = Buffer.concat([
      Buffer.from('+OK\r\n-ERR bad  thing\r\n:-42\r\n:9223372036854775807\r\n$3\r\n'),
      Buffer.from([0, 13, 10]),
      Buffer.from('\r\n$6\r\nhéllo\r\n$-1\r\n$-1\r\n*2\r\n$0\r\n\r\n$5000\r\n'),
      Buffer.alloc(5000, 1),
      Buffer.from('\r\n'),
    ]);
    assert.deepEqual(bytes, expected);
  });

  test('never writes into a buffer it has handed out', () => {
    const out = new ReplyWriter();
    out.simple('first');
    const first = out.take();
    const copy = Buffer.from(first);
    out.simple('second');
    out.take();
    assert.deepEqual(first, copy);
  });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { rateOption } from '../../src/cli/context.js';
import { UserError } from '../../src/util/errors.js';
import { formatRate, MAX_BYTES_PER_SECOND, parseRate, RateError } from '../../src/util/rate.js';

test('parseRate reads bits as tc does: kbit/mbit/gbit decimal, kibit/mibit/gibit binary', () => {
  assert.equal(parseRate('1Gbit'), 125e6);
  assert.equal(parseRate('1gbit'), 125e6);
  assert.equal(parseRate('100mbit'), 12.5e6);
  assert.equal(parseRate('500kbit'), 62_500);
  assert.equal(parseRate('8bit'), 1);
  assert.equal(parseRate('1Kibit'), 128);
  assert.equal(parseRate('1mibit'), 2 ** 17);
  assert.equal(parseRate('1GiBit'), 2 ** 27);
  assert.equal(parseRate('2.5 Gbit/s'), 312.5e6);
  assert.equal(parseRate(' 10gbit/s '), 1.25e9);
  assert.equal(parseRate('1tbit'), MAX_BYTES_PER_SECOND);
});

test('parseRate reads bytes with the units of parseSize, bare K/M/G binary', () => {
  assert.equal(parseRate('100MB/s'), 100e6);
  assert.equal(parseRate('100 MB'), 100e6);
  assert.equal(parseRate('1GiB/s'), 2 ** 30);
  assert.equal(parseRate('1gIB/s'), 2 ** 30);
  assert.equal(parseRate('250M'), 250 * 2 ** 20);
  assert.equal(parseRate('250m/s'), 250 * 2 ** 20);
  assert.equal(parseRate('1.5KiB/s'), 1536);
  assert.equal(parseRate('4096B/s'), 4096);
  assert.equal(parseRate('1kB/s'), 1000);
});

test('parseRate refuses garbage, zero, negative, non-finite and absurd rates with an example', () => {
  const refused: [string, RegExp][] = [
    ['', /malformed/],
    ['fast', /malformed/],
    ['gbit', /malformed/],
    ['-1gbit', /malformed/],
    ['+1gbit', /malformed/],
    ['1e9bit', /malformed/],
    ['Infinity', /malformed/],
    ['NaN', /malformed/],
    ['.5gbit', /malformed/],
    ['1gbit/h', /malformed/],
    ['1 gbit per second', /malformed/],
    ['1gbit 2gbit', /malformed/],
    ['0gbit', /is zero/],
    ['0.000MB/s', /is zero/],
    ['1000000000', /no unit/],
    ['100/s', /no unit/],
    ['1gbps', /ambiguous/],
    ['100Mbps', /ambiguous/],
    ['1kBps', /ambiguous/],
    ['100mb', /ambiguous/],
    ['100Mb/s', /ambiguous/],
    ['1gib', /ambiguous/],
    ['8b', /ambiguous/],
    ['1xbit', /unknown unit/],
    ['1bits', /unknown unit/],
    ['1PB/s', /unknown unit/],
    ['1kibibit', /unknown unit/],
    ['1.000001tbit', /above 1.00 Tbit\/s/],
    ['2TB/s', /above/],
    ['1tibit', /above/],
    [`1${'0'.repeat(400)}gbit`, /above/],
    [`1${'0'.repeat(400)}GB`, /above/],
  ];
  for (const [text, message] of refused) {
    assert.throws(
      () => parseRate(text),
      (err: unknown) => err instanceof RateError && message.test(err.message) && /e\.g\./.test(err.message),
      text,
    );
  }
});

/** Well-formed-looking rates, valid or not, so that the property reaches past the first regex. */
const rateTextArb = fc
  .tuple(
    fc.oneof(
      fc.nat().map(String),
      fc.double({ min: 0, max: 1e6, noNaN: true }).map((x) => x.toFixed(3)),
    ),
    fc.constantFrom('', ' '),
    fc.constantFrom('bit', 'kbit', 'Mbit', 'gbit', 'Tbit', 'Kibit', 'B', 'KB', 'MiB', 'G', 'T', 'Mb', 'gbps'),
    fc.constantFrom('', '/s'),
  )
  .map((parts) => parts.join(''));

test('parseRate accepts exactly what lies in (0, 1 Tbit/s], and throws nothing but RateError', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), rateTextArb), (text) => {
      try {
        const rate = parseRate(text);
        assert.ok(rate > 0 && rate <= MAX_BYTES_PER_SECOND, `${text} -> ${rate}`);
      } catch (err) {
        assert.ok(err instanceof RateError, String(err));
      }
    }),
  );
});

test('a bit rate and the same byte rate agree', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 10 ** 8 }), (n) => {
      assert.equal(parseRate(`${n * 8}bit`), parseRate(`${n}B/s`));
      assert.equal(parseRate(`${n * 8}kbit`), parseRate(`${n}KB/s`));
    }),
  );
});

test('formatRate prints bits per second with SI prefixes', () => {
  assert.equal(formatRate(125e6), '1.00 Gbit/s');
  assert.equal(formatRate(62_500), '500.0 kbit/s');
  assert.equal(formatRate(1), '8.00 bit/s');
  assert.equal(formatRate(12.5e6), '100.0 Mbit/s');
  assert.equal(formatRate(MAX_BYTES_PER_SECOND), '1.00 Tbit/s');
  assert.equal(formatRate(124_996), '1.00 Mbit/s');
  assert.equal(formatRate(Infinity), 'unlimited');
});

test('parseRate reads what formatRate prints, to within its three significant digits', () => {
  fc.assert(
    fc.property(fc.double({ min: 1 / 8, max: MAX_BYTES_PER_SECOND, noNaN: true }), (rate) => {
      const printed = formatRate(rate);
      const back = parseRate(printed);
      assert.ok(Math.abs(back - rate) <= rate * 0.005 + 1e-9, `${rate} -> ${printed} -> ${back}`);
    }),
  );
});

test('rateOption turns a RateError into a UserError naming the flag', () => {
  assert.equal(rateOption('1gbit', '--bandwidth'), 125e6);
  assert.throws(
    () => rateOption('1gbps', '--bandwidth'),
    (err: unknown) => err instanceof UserError && /^--bandwidth: ambiguous unit 'gbps'/.test(err.message),
  );
});

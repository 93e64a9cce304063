import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { AttestationError } from '../../src/tee/backend.js';
import { parseSgxQuote, QuoteFormatError, type SgxQuote } from '../../src/tee/sgx-quote.js';
import {
  buildQuote,
  buildSignedPart,
  FLAG_DEBUG,
  FLAG_INITTED,
  FLAG_MODE64BIT,
  type QuoteFields,
  sampleFields,
} from '../helpers/sgx-quote-builder.js';

function expectedQuote(f: QuoteFields, raw: Buffer): SgxQuote {
  return {
    version: f.version as 3 | 4,
    attestationKeyType: f.attestationKeyType,
    teeType: f.teeType,
    qeSvn: f.qeSvn,
    pceSvn: f.pceSvn,
    qeVendorId: f.qeVendorId.toString('hex'),
    body: {
      cpuSvn: f.cpuSvn.toString('hex'),
      miscSelect: f.miscSelect,
      attributes: { flags: f.flags, xfrm: f.xfrm },
      debug: (f.flags & FLAG_DEBUG) !== 0n,
      mrEnclave: f.mrEnclave.toString('hex'),
      mrSigner: f.mrSigner.toString('hex'),
      isvProdId: f.isvProdId,
      isvSvn: f.isvSvn,
      configSvn: f.configSvn,
      reportData: f.reportData,
    },
    signedBytes: raw.subarray(0, 432),
    signatureData: raw.subarray(436),
  };
}

function withSignatureLength(quote: Buffer, length: number): Buffer {
  const copy = Buffer.from(quote);
  copy.writeUInt32LE(length, 432);
  return copy;
}

describe('parseSgxQuote', () => {
  for (const version of [3, 4]) {
    test(`v${version}: every field round trips`, () => {
      const fields = sampleFields({ version });
      const raw = buildQuote(fields);
      assert.deepEqual(parseSgxQuote(raw), expectedQuote(fields, raw));
    });
  }

  test('v4 signature data carries its certification data as type 6 (QE report certification data)', () => {
    const v4 = parseSgxQuote(buildQuote(sampleFields({ version: 4 })));
    assert.equal(v4.signatureData.readUInt16LE(128), 6);
    assert.equal(v4.signatureData.readUInt32LE(130), v4.signatureData.length - 134);
  });

  test('the debug flag is attributes bit 1 and nothing else', () => {
    const parse = (flags: bigint) => parseSgxQuote(buildQuote(sampleFields({ flags }))).body.debug;
    assert.equal(parse(FLAG_INITTED | FLAG_MODE64BIT), false);
    assert.equal(parse(FLAG_INITTED | FLAG_DEBUG | FLAG_MODE64BIT), true);
    assert.equal(parse(~FLAG_DEBUG & 0xffff_ffff_ffff_ffffn), false);
    assert.equal(parse(FLAG_DEBUG), true);
  });

  test('hex fields are lowercase and full length', () => {
    const quote = parseSgxQuote(buildQuote(sampleFields({ mrEnclave: Buffer.alloc(32, 0xab) })));
    assert.equal(quote.body.mrEnclave, 'ab'.repeat(32));
    assert.match(quote.body.mrSigner, /^[0-9a-f]{64}$/);
    assert.match(quote.body.cpuSvn, /^[0-9a-f]{32}$/);
    assert.match(quote.qeVendorId, /^[0-9a-f]{32}$/);
  });

  test('returns copies: reusing the input buffer afterwards changes nothing', () => {
    const fields = sampleFields();
    const raw = buildQuote(fields);
    const signatureData = Buffer.from(raw.subarray(436));
    const quote = parseSgxQuote(raw);
    raw.fill(0xee);
    assert.deepEqual(quote.body.reportData, fields.reportData);
    assert.deepEqual(quote.signedBytes, buildSignedPart(fields));
    assert.deepEqual(quote.signatureData, signatureData);
  });

  describe('rejects with a specific QuoteFormatError', () => {
    const good = buildQuote(sampleFields());
    const cases: Array<[string, Buffer, RegExp]> = [
      ['an empty buffer', Buffer.alloc(0), /0 bytes, too short/],
      ['a quote cut inside the signature length', good.subarray(0, 435), /435 bytes, too short/],
      ['version 2', buildQuote(sampleFields({ version: 2 })), /unsupported quote version 2 /],
      ['version 5', buildQuote(sampleFields({ version: 5 })), /unsupported quote version 5 /],
      ['an EPID key type', buildQuote(sampleFields({ attestationKeyType: 0 })), /attestation key type 0 /],
      ['a P-384 key type', buildQuote(sampleFields({ attestationKeyType: 3 })), /attestation key type 3 /],
      ['a TDX quote', buildQuote(sampleFields({ version: 4, teeType: 0x81 })), /TDX quote \(tee type 0x81\)/],
      ['an unknown tee type', buildQuote(sampleFields({ version: 4, teeType: 7 })), /v4 tee type is 0x7/],
      ['a v3 reserved field set', buildQuote(sampleFields({ teeType: 1 })), /v3 reserved field is 0x1/],
      ['a truncated quote', good.subarray(0, good.length - 1), /length \d+ exceeds the \d+ bytes/],
      ['a signature length one too long', withSignatureLength(good, good.length - 435), /exceeds/],
      ['a signature length of 4 GiB - 1', withSignatureLength(good, 0xffff_ffff), /4294967295 exceeds/],
      ['trailing garbage', Buffer.concat([good, Buffer.from([0])]), /1 trailing bytes/],
      ['a signature length one too short', withSignatureLength(good, good.length - 437), /1 trailing/],
      [
        'signature data without the attestation key',
        buildQuote(sampleFields(), { signatureData: Buffer.alloc(127) }),
        /127 bytes, shorter than an ECDSA signature and key/,
      ],
    ];
    for (const [name, bytes, message] of cases) {
      test(name, () => {
        assert.throws(
          () => parseSgxQuote(bytes),
          (err: unknown) =>
            err instanceof QuoteFormatError && err instanceof AttestationError && message.test(err.message),
        );
      });
    }
  });

  test('fuzz: any bytes, and any damage to a good quote, parse or throw QuoteFormatError', () => {
    const good = buildQuote(sampleFields({ version: 4 }));
    const damaged = fc
      .tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(good.length))
      .map(([at, value, keep]) => {
        const copy = Buffer.from(good);
        copy[at] = value;
        return copy.subarray(0, keep);
      });
    const anything = fc.uint8Array({ maxLength: 2048 }).map((bytes) => Buffer.from(bytes));
    fc.assert(
      fc.property(fc.oneof(damaged, anything), (bytes) => {
        try {
          parseSgxQuote(bytes);
        } catch (err) {
          assert.ok(err instanceof QuoteFormatError, `unexpected ${String(err)}`);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

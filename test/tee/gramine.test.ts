import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { AttestationError, type GramineEvidence } from '../../src/tee/backend.js';
import {
  gramineEvidenceSchema,
  GramineTee,
  MAX_QUOTE_BYTES,
  verifyGramineEvidence,
} from '../../src/tee/gramine.js';
import { attestationKeyOnlyVerifier, untrustedQuoteVerifier } from '../../src/tee/quote-verifier.js';
import { QuoteFormatError } from '../../src/tee/sgx-quote.js';
import { FakeAttestationDir } from '../helpers/fake-attestation-dir.js';
import {
  buildQuote,
  FLAG_DEBUG,
  FLAG_INITTED,
  type QuoteFields,
  sampleFields,
} from '../helpers/sgx-quote-builder.js';

const MR_ENCLAVE = Buffer.alloc(32, 0x5e);
const OPT_IN = { insecureAcceptUnverifiedQuotes: true } as const;
const checkNothing = untrustedQuoteVerifier(OPT_IN);
const checkSignature = attestationKeyOnlyVerifier(OPT_IN);

const fakes: FakeAttestationDir[] = [];
after(() => fakes.forEach((fake) => fake.remove()));

function fakeDir(attestationType = 'dcap\n'): FakeAttestationDir {
  const fake = new FakeAttestationDir(attestationType);
  fakes.push(fake);
  return fake;
}

function enclaveQuote(reportData: Buffer, overrides: Partial<QuoteFields> = {}): Buffer {
  return buildQuote(sampleFields({ mrEnclave: MR_ENCLAVE, reportData, ...overrides }));
}

/** A GramineTee over a fake directory that has answered open()'s zero-report-data quote. */
function openTee(overrides: Partial<QuoteFields> = {}): { tee: GramineTee; fake: FakeAttestationDir } {
  const fake = fakeDir();
  fake.offerQuote(enclaveQuote(Buffer.alloc(64), overrides));
  return { tee: GramineTee.open({ attestationDir: fake.dir }), fake };
}

function evidenceFor(reportData: Buffer, overrides: Partial<QuoteFields> = {}): GramineEvidence {
  return { backend: 'gramine', quote: enclaveQuote(reportData, overrides).toString('base64') };
}

function withoutPadding(base64: string): string {
  assert.match(base64, /=$/, 'the sample quote must need padding for this case to mean anything');
  return base64.replace(/=+$/, '');
}

describe('GramineTee.open', () => {
  test('refuses when the attestation directory is absent', () => {
    const missing = path.join(tmpdir(), `constmig-no-such-dir-${randomBytes(6).toString('hex')}`);
    assert.throws(
      () => GramineTee.open({ attestationDir: missing }),
      (err: unknown) =>
        err instanceof AttestationError &&
        err.message === `${missing} not found: not running under gramine-sgx`,
    );
  });

  test('by default looks at /dev/attestation', { skip: existsSync('/dev/attestation') }, () => {
    assert.throws(() => GramineTee.open(), /^AttestationError: \/dev\/attestation not found/);
  });

  for (const type of ['epid', 'none']) {
    test(`refuses attestation type '${type}'`, () => {
      const fake = fakeDir(`${type}\n`);
      fake.offerQuote(enclaveQuote(Buffer.alloc(64)));
      assert.throws(
        () => GramineTee.open({ attestationDir: fake.dir }),
        new RegExp(`attestation type is '${type}', the gramine backend needs 'dcap'.*sgx.remote_attestation`),
      );
    });
  }

  test('refuses when no quote can be read', () => {
    const fake = fakeDir();
    assert.throws(() => GramineTee.open({ attestationDir: fake.dir }), /cannot take a quote through/);
  });

  test('learns its measurement from a quote over zero report data', () => {
    const { tee, fake } = openTee();
    assert.deepEqual(fake.writtenReportData(), Buffer.alloc(64));
    assert.equal(tee.kind, 'gramine');
    assert.equal(tee.secure, true);
    assert.equal(tee.measurement, MR_ENCLAVE.toString('hex'));
    assert.equal(tee.describe(), `gramine-sgx (SGX DCAP quotes, MRENCLAVE ${tee.measurement})`);
  });

  test('says so when the enclave is a debug enclave', () => {
    const { tee } = openTee({ flags: FLAG_INITTED | FLAG_DEBUG });
    assert.match(tee.describe(), /DEBUG enclave: its memory is readable by the host\)$/);
  });

  test('refuses a quote that does not bind the report data it wrote', () => {
    const fake = fakeDir();
    fake.offerQuote(enclaveQuote(randomBytes(64)));
    assert.throws(
      () => GramineTee.open({ attestationDir: fake.dir }),
      /binds other report data .*stale quote/,
    );
  });

  test('refuses a malformed quote', () => {
    const fake = fakeDir();
    fake.offerQuote(Buffer.alloc(100));
    assert.throws(() => GramineTee.open({ attestationDir: fake.dir }), QuoteFormatError);
  });
});

describe('GramineTee.report', () => {
  test('writes the report data and returns the quote Gramine gives, as canonical base64', () => {
    const { tee, fake } = openTee();
    const reportData = randomBytes(64);
    const quote = enclaveQuote(reportData);
    fake.offerQuote(quote);
    const evidence = tee.report(reportData);
    assert.deepEqual(fake.writtenReportData(), reportData);
    assert.deepEqual(evidence, { backend: 'gramine', quote: quote.toString('base64') });
    assert.equal(gramineEvidenceSchema.safeParse(evidence).success, true);
  });

  test('refuses report data that is not 64 bytes', () => {
    const { tee } = openTee();
    assert.throws(() => tee.report(Buffer.alloc(32)), /report data must be 64 bytes, got 32/);
  });

  test('refuses a stale quote (bound to the previous report data)', () => {
    const { tee } = openTee();
    assert.throws(() => tee.report(randomBytes(64)), /binds other report data/);
  });

  test('refuses a quote that names another enclave', () => {
    const { tee, fake } = openTee();
    const reportData = randomBytes(64);
    fake.offerQuote(enclaveQuote(reportData, { mrEnclave: Buffer.alloc(32, 0x77) }));
    assert.throws(() => tee.report(reportData), /names another enclave/);
  });

  test('refuses a quote above the size bound its peers would reject', () => {
    const { tee, fake } = openTee();
    const reportData = randomBytes(64);
    const signatureData = Buffer.alloc(MAX_QUOTE_BYTES);
    fake.offerQuote(buildQuote(sampleFields({ mrEnclave: MR_ENCLAVE, reportData }), { signatureData }));
    assert.throws(() => tee.report(reportData), /above 16384/);
  });
});

describe('verifyGramineEvidence', () => {
  test('evidence from GramineTee.report verifies and names the enclave, signer and verifier', () => {
    const { tee, fake } = openTee();
    const reportData = randomBytes(64);
    fake.offerQuote(enclaveQuote(reportData));
    const verified = verifyGramineEvidence(tee.report(reportData), reportData, checkSignature);
    const fields = sampleFields();
    assert.deepEqual(verified, {
      backend: 'gramine',
      measurement: MR_ENCLAVE.toString('hex'),
      platform: {
        kind: 'sgx',
        mrSigner: fields.mrSigner.toString('hex'),
        isvProdId: fields.isvProdId,
        isvSvn: fields.isvSvn,
        debug: false,
        verifier: 'attestation-key-only',
        tcbStatus: 'NotEvaluated',
      },
      secure: true,
    });
  });

  test('reports a debug enclave as such', () => {
    const reportData = randomBytes(64);
    const evidence = evidenceFor(reportData, { flags: FLAG_INITTED | FLAG_DEBUG });
    assert.equal(verifyGramineEvidence(evidence, reportData, checkNothing).platform.debug, true);
  });

  test('attack: a quote replayed from another handshake is rejected for its report data', () => {
    const evidence = evidenceFor(randomBytes(64));
    assert.throws(
      () => verifyGramineEvidence(evidence, randomBytes(64), checkSignature),
      (err: unknown) => err instanceof AttestationError && /report data/.test(err.message),
    );
  });

  test('attack: changing the report data inside a signed quote breaks its signature', () => {
    const reportData = randomBytes(64);
    const quote = enclaveQuote(randomBytes(64));
    reportData.copy(quote, 48 + 320);
    const evidence = { backend: 'gramine', quote: quote.toString('base64') };
    assert.throws(
      () => verifyGramineEvidence(evidence, reportData, checkSignature),
      /signature does not verify/,
    );
  });

  test('the verifier has the last word: without the opt-in nothing is accepted', () => {
    const reportData = randomBytes(64);
    assert.throws(
      () => verifyGramineEvidence(evidenceFor(reportData), reportData, untrustedQuoteVerifier()),
      /does not verify the quote's certification chain/,
    );
  });

  test('the quote is parsed before it is handed to the verifier', () => {
    const evidence = { backend: 'gramine', quote: Buffer.alloc(500).toString('base64') };
    assert.throws(() => verifyGramineEvidence(evidence, randomBytes(64), checkNothing), QuoteFormatError);
  });

  test('refuses expected report data that is not 64 bytes', () => {
    const reportData = randomBytes(64);
    assert.throws(
      () => verifyGramineEvidence(evidenceFor(reportData), reportData.subarray(0, 63), checkNothing),
      /report data must be 64 bytes, got 63/,
    );
  });

  describe('rejects malformed evidence', () => {
    const reportData = randomBytes(64);
    const good = evidenceFor(reportData);
    const cases: Array<[string, unknown, RegExp]> = [
      ['a non-object', 'quote', /malformed evidence: \(root\)/],
      ['sim evidence', { ...good, backend: 'sim' }, /malformed evidence: backend/],
      ['an extra field', { ...good, measurement: 'ab'.repeat(32) }, /malformed evidence: \(root\)/],
      ['a missing quote', { backend: 'gramine' }, /malformed evidence: quote/],
      ['non-canonical base64', { ...good, quote: withoutPadding(good.quote) }, /not canonical base64/],
      ['base64 with whitespace', { ...good, quote: ` ${good.quote}` }, /malformed evidence: quote/],
      [
        'a quote above 16 KiB',
        { ...good, quote: Buffer.alloc(MAX_QUOTE_BYTES + 1).toString('base64') },
        /malformed evidence: quote/,
      ],
    ];
    for (const [name, evidence, message] of cases) {
      test(name, () => {
        assert.throws(() => verifyGramineEvidence(evidence, reportData, checkNothing), message);
      });
    }
  });

  test('the schema accepts a quote of exactly 16 KiB', () => {
    const quote = Buffer.alloc(MAX_QUOTE_BYTES).toString('base64');
    assert.equal(gramineEvidenceSchema.safeParse({ backend: 'gramine', quote }).success, true);
  });
});

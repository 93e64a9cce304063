import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AttestationError } from '../../src/tee/backend.js';
import {
  attestationKeyOnlyVerifier,
  type QuoteVerifier,
  type UnverifiedQuotesOptIn,
  untrustedQuoteVerifier,
} from '../../src/tee/quote-verifier.js';
import { parseSgxQuote } from '../../src/tee/sgx-quote.js';
import { buildQuote, newAttestationKey, sampleFields } from '../helpers/sgx-quote-builder.js';

const OPT_IN: UnverifiedQuotesOptIn = { insecureAcceptUnverifiedQuotes: true };

function check(verifier: QuoteVerifier, raw: Buffer): { tcbStatus: string } {
  return verifier.verify(parseSgxQuote(raw), raw);
}

function refusesWithoutOptIn(makeVerifier: (optIn?: UnverifiedQuotesOptIn) => QuoteVerifier): void {
  const raw = buildQuote(sampleFields());
  // A policy read from JSON could carry anything; only the literal true opts in.
  const notOptIns: unknown[] = [
    undefined,
    {},
    { insecureAcceptUnverifiedQuotes: 'true' },
    { insecureAcceptUnverifiedQuotes: 1 },
  ];
  for (const optIn of notOptIns) {
    assert.throws(
      () => check(makeVerifier(optIn as UnverifiedQuotesOptIn), raw),
      (err: unknown) =>
        err instanceof AttestationError &&
        /does not verify the quote's certification chain .* insecureAcceptUnverifiedQuotes: true/.test(
          err.message,
        ),
      `opt-in ${JSON.stringify(optIn)}`,
    );
  }
}

describe("untrustedQuoteVerifier ('none')", () => {
  test('refuses every quote unless the policy opts in with the literal true', () => {
    refusesWithoutOptIn(untrustedQuoteVerifier);
  });

  test('once opted in, accepts a structurally valid quote and says the TCB was not evaluated', () => {
    const verifier = untrustedQuoteVerifier(OPT_IN);
    assert.equal(verifier.name, 'none');
    assert.deepEqual(check(verifier, buildQuote(sampleFields())), { tcbStatus: 'NotEvaluated' });
  });
});

describe("attestationKeyOnlyVerifier ('attestation-key-only')", () => {
  const verifier = attestationKeyOnlyVerifier(OPT_IN);

  test('refuses every quote unless the policy opts in with the literal true', () => {
    refusesWithoutOptIn(attestationKeyOnlyVerifier);
  });

  for (const version of [3, 4]) {
    test(`accepts a v${version} quote signed by its embedded attestation key`, () => {
      assert.equal(verifier.name, 'attestation-key-only');
      const raw = buildQuote(sampleFields({ version }));
      assert.deepEqual(check(verifier, raw), { tcbStatus: 'NotEvaluated' });
    });
  }

  test('rejects a quote whose report body was changed after signing', () => {
    const raw = buildQuote(sampleFields());
    raw[48 + 64]! ^= 0x01; // first byte of MRENCLAVE
    assert.throws(() => check(verifier, raw), /signature does not verify under its attestation key/);
  });

  test('rejects a quote whose header was changed after signing', () => {
    const raw = buildQuote(sampleFields());
    raw[8]! ^= 0x01; // QE SVN
    assert.throws(() => check(verifier, raw), /signature does not verify/);
  });

  test('rejects a quote signed by another key than the one it carries', () => {
    const fields = sampleFields();
    const signedByA = buildQuote(fields, { attestationKey: newAttestationKey() });
    const signedByB = buildQuote(fields, { attestationKey: newAttestationKey() });
    const mixed = Buffer.concat([signedByA.subarray(0, 436 + 64), signedByB.subarray(436 + 64)]);
    assert.throws(() => check(verifier, mixed), /signature does not verify/);
  });

  test('rejects an attestation key that is not a point on P-256', () => {
    const raw = buildQuote(sampleFields());
    raw.fill(0xff, 436 + 64, 436 + 128);
    assert.throws(() => check(verifier, raw), /attestation key is not a valid P-256 public key/);
  });

  test('its limit, stated: a quote forged with any key of the forger verifies', () => {
    const forged = buildQuote(sampleFields({ mrEnclave: Buffer.alloc(32, 0x66) }));
    assert.deepEqual(check(verifier, forged), { tcbStatus: 'NotEvaluated' });
  });
});

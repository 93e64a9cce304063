import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodePreamble, encodePreamble, PREAMBLE_BYTES } from '../../src/wire/preamble.js';

test('preamble round trip and rejection', () => {
  const ticket = '00112233445566778899aabbccddeeff';
  const bytes = encodePreamble(ticket);
  assert.equal(bytes.length, PREAMBLE_BYTES);
  assert.equal(decodePreamble(bytes), ticket);
  const wrongMagic = Buffer.from(bytes);
  wrongMagic[0] = 0x58;
  assert.equal(decodePreamble(wrongMagic), null);
  assert.equal(decodePreamble(bytes.subarray(1)), null);
  assert.throws(() => encodePreamble('abcd'), /16 bytes/);
});

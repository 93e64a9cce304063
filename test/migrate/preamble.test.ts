import assert from 'node:assert/strict';
import { test } from 'node:test';
import { peerAuth, peerAuthMatches } from '../../src/host/peer-auth.js';
import { decodePreamble, encodePreamble, PREAMBLE_BYTES } from '../../src/wire/preamble.js';

const ticket = '00112233445566778899aabbccddeeff';
const auth = 'ab'.repeat(32);

test('preamble round trip and rejection', () => {
  const bytes = encodePreamble(ticket, auth);
  assert.equal(bytes.length, PREAMBLE_BYTES);
  assert.equal(PREAMBLE_BYTES, 8 + 16 + 32);
  assert.deepEqual(decodePreamble(bytes), { ticket, peerAuth: Buffer.from(auth, 'hex') });
  const wrongMagic = Buffer.from(bytes);
  wrongMagic[0] = 0x58;
  assert.equal(decodePreamble(wrongMagic), null);
  const version1 = Buffer.concat([Buffer.from('CMIGDATA'), bytes.subarray(8)]);
  assert.equal(decodePreamble(version1), null, 'the unauthenticated version-1 magic is refused');
  assert.equal(decodePreamble(bytes.subarray(1)), null);
  assert.throws(() => encodePreamble('abcd', auth), /ticket must be 16 bytes/);
  assert.throws(() => encodePreamble(ticket, 'ab'.repeat(31)), /peer auth must be 32 bytes/);
  assert.throws(() => encodePreamble(ticket, 'zz'.repeat(32)), /peer auth must be 32 bytes/);
});

test('peer auth is an HMAC of the ticket under the token, checked in constant time', () => {
  const token = 'a'.repeat(64);
  const mac = peerAuth(token, ticket);
  assert.equal(mac.length, 32);
  assert.ok(peerAuthMatches(token, ticket, mac));
  assert.ok(!peerAuthMatches('b'.repeat(64), ticket, mac), 'another token');
  assert.ok(!peerAuthMatches(token, 'ff'.repeat(16), mac), 'another ticket');
  assert.ok(!peerAuthMatches(token, ticket, mac.subarray(0, 31)), 'truncated');
  const flipped = Buffer.from(mac);
  flipped[31]! ^= 1;
  assert.ok(!peerAuthMatches(token, ticket, flipped), 'one bit flipped');
});

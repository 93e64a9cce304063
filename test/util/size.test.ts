import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseHostPort } from '../../src/util/address.js';
import { formatBytes, parseSize } from '../../src/util/size.js';

test('parseSize reads binary and decimal units', () => {
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('1GiB'), 2 ** 30);
  assert.equal(parseSize('1G'), 2 ** 30);
  assert.equal(parseSize('1GB'), 1e9);
  assert.equal(parseSize('256 MiB'), 256 * 2 ** 20);
  assert.equal(parseSize('1.5k'), 1536);
  assert.equal(parseSize('8gib'), 8 * 2 ** 30);
});

test('parseSize rejects what it cannot read', () => {
  for (const bad of ['', 'lots', '-1G', '1 XB', '1e9', 'G1']) {
    assert.throws(() => parseSize(bad), /malformed size|unknown unit/, bad);
  }
});

test('formatBytes', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(2 ** 30), '1.00 GiB');
  assert.equal(formatBytes(300 * 2 ** 20), '300.0 MiB');
});

test('parseHostPort', () => {
  assert.deepEqual(parseHostPort('127.0.0.2:7401'), { host: '127.0.0.2', port: 7401 });
  assert.deepEqual(parseHostPort('[::1]:80'), { host: '::1', port: 80 });
  for (const bad of ['nowhere', '1.2.3.4', '1.2.3.4:99999', ':80']) {
    assert.throws(() => parseHostPort(bad), /malformed address/, bad);
  }
});

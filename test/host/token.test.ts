import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { loadOrCreateToken, readToken, TokenVerifier } from '../../src/host/token.js';
import { UserError } from '../../src/util/errors.js';

describe('TokenVerifier', () => {
  const token = 'c0ffee'.repeat(10) + 'abcd';
  const verifier = new TokenVerifier(token);

  test('accepts exactly `Bearer <token>`', () => {
    assert.equal(verifier.acceptsHeader(`Bearer ${token}`), true);
  });

  test('refuses everything else, whatever its length, without throwing', () => {
    for (const header of [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      `Bearer ${token.slice(0, -1)}`,
      `Bearer ${token}0`,
      `Bearer ${token.slice(0, 1)}`,
      `Bearer ${'x'.repeat(10_000)}`,
      `Bearer  ${token}`,
      `bearer ${token}`,
      `Basic ${token}`,
      token,
      `Bearer ${token.toUpperCase()}`,
    ]) {
      assert.equal(verifier.acceptsHeader(header), false, String(header).slice(0, 40));
    }
  });

  test('refuses to protect anything with a short or header-unsafe token', () => {
    assert.throws(() => new TokenVerifier('short'), /fewer than 32/);
    assert.throws(() => new TokenVerifier(`${'a'.repeat(40)} b`), /cannot follow "Bearer "/);
  });
});

describe('loadOrCreateToken', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-token-unit-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('creates a 64-hex token with mode 0600 in a new 0700 folder, then reads it back', () => {
    const file = path.join(dir, 'a', 'b', 'token');
    const token = loadOrCreateToken(file);
    assert.match(token, /^[0-9a-f]{64}$/);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
    assert.equal(loadOrCreateToken(file), token);
    assert.equal(readToken(file), token);
  });

  test('refuses a file that group or others may read or write, and names the fix', () => {
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602]) {
      const file = path.join(dir, `loose-${mode.toString(8)}`);
      fs.writeFileSync(file, `${'ab'.repeat(32)}\n`);
      fs.chmodSync(file, mode);
      assert.throws(
        () => loadOrCreateToken(file),
        (err: Error) =>
          err instanceof UserError &&
          err.message ===
            `token file ${file} is accessible by group or others (mode 0${mode.toString(8)}); run: chmod 600 ${file}`,
      );
    }
  });

  test('refuses a short token, a folder, and says which file', () => {
    const short = path.join(dir, 'short');
    fs.writeFileSync(short, 'hunter2\n', { mode: 0o600 });
    assert.throws(
      () => loadOrCreateToken(short),
      /token file .*short cannot be used .*7 characters, fewer than 32/,
    );
    assert.throws(() => readToken(short), /fewer than 32/);
    const folder = path.join(dir, 'folder');
    fs.mkdirSync(folder, { mode: 0o700 });
    assert.throws(() => loadOrCreateToken(folder), /is not a regular file/);
    assert.throws(() => readToken(path.join(dir, 'missing')), /cannot read token file .*missing: ENOENT/);
  });
});

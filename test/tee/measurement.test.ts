import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { computeMeasurement } from '../../src/tee/measurement.js';

const roots: string[] = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function bundle(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(tmpdir(), 'constmig-measure-'));
  roots.push(root);
  for (const [relative, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, relative)), { recursive: true });
    writeFileSync(path.join(root, relative), content);
  }
  return root;
}

const FILES = {
  'main.js': 'console.log(1);\n',
  'lib/a.mjs': 'export const a = 1;\n',
  'lib/b.cjs': 'module.exports = 2;\n',
  'lib/types.ts': 'export type T = number;\n',
  'config/app.json': '{"x":1}',
  'main.js.map': '{"version":3}',
  'lib/a.d.ts': 'export declare const a: number;\n',
  'README.md': '# not code\n',
};

describe('computeMeasurement', () => {
  test('matches the documented encoding', () => {
    const root = bundle(FILES);
    const hash = createHash('sha256').update('constmig-measurement-v1\0v20.0.0\0');
    for (const relative of ['config/app.json', 'lib/a.mjs', 'lib/b.cjs', 'lib/types.ts', 'main.js']) {
      const content = Buffer.from(FILES[relative as keyof typeof FILES]);
      const size = Buffer.alloc(8);
      size.writeBigUInt64LE(BigInt(content.length));
      hash.update(`${relative}\0`).update(size).update(content);
    }
    assert.equal(computeMeasurement(root, 'v20.0.0'), hash.digest('hex'));
  });

  test('is stable for the same files wherever they are', () => {
    const root = bundle(FILES);
    const copy = bundle({});
    cpSync(root, copy, { recursive: true });
    assert.match(computeMeasurement(root, 'v20'), /^[0-9a-f]{64}$/);
    assert.equal(computeMeasurement(root, 'v20'), computeMeasurement(root, 'v20'));
    assert.equal(computeMeasurement(copy, 'v20'), computeMeasurement(root, 'v20'));
  });

  test('changes with one byte of a measured file, with a rename, and with the runtime version', () => {
    const base = computeMeasurement(bundle(FILES), 'v20');
    assert.notEqual(
      computeMeasurement(bundle({ ...FILES, 'lib/b.cjs': 'module.exports = 3;\n' }), 'v20'),
      base,
    );
    assert.notEqual(computeMeasurement(bundle({ ...FILES, 'config/app.json': '{"x":2}' }), 'v20'), base);
    const renamed = bundle(FILES);
    renameSync(path.join(renamed, 'main.js'), path.join(renamed, 'main2.js'));
    assert.notEqual(computeMeasurement(renamed, 'v20'), base);
    assert.notEqual(computeMeasurement(bundle(FILES), 'v22'), base);
  });

  test('ignores source maps, declarations, other files and symlinks', () => {
    const base = computeMeasurement(bundle(FILES), 'v20');
    const noise = bundle({
      ...FILES,
      'main.js.map': '{"version":3,"changed":true}',
      'lib/a.d.ts': 'export declare const a: string;\n',
      'README.md': 'changed',
      'extra/notes.txt': 'more',
    });
    symlinkSync(path.join(noise, 'main.js'), path.join(noise, 'linked.js'));
    assert.equal(computeMeasurement(noise, 'v20'), base);
  });
});

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const MEASURED = /\.(js|ts|mjs|cjs|json)$/;
const DECLARATIONS = /\.d\.ts$/;

/** Regular files under `dir` (symlinks are not followed), as relative POSIX paths. */
function measuredFiles(root: string, dir = ''): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const relative = dir === '' ? entry.name : `${dir}/${entry.name}`;
    if (entry.isDirectory()) files.push(...measuredFiles(root, relative));
    else if (entry.isFile() && MEASURED.test(entry.name) && !DECLARATIONS.test(entry.name))
      files.push(relative);
  }
  return files;
}

/** Byte-wise order of the UTF-8 paths, so the result does not depend on locale or JS string order. */
function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The sim backend's measurement of an application bundle: SHA-256 (hex) over
 * 'constmig-measurement-v1\0' + runtimeVersion + '\0', then for each measured file in byte order of
 * its relative POSIX path: path + '\0' + u64le(size) + content. Measured files are the regular
 * .js/.ts/.mjs/.cjs/.json files; source maps and .d.ts declarations do not change what runs.
 */
export function computeMeasurement(bundleDir: string, runtimeVersion: string): string {
  const hash = createHash('sha256');
  hash.update(`constmig-measurement-v1\0${runtimeVersion}\0`, 'utf8');
  for (const relative of measuredFiles(bundleDir).sort(byUtf8)) {
    const content = readFileSync(path.join(bundleDir, ...relative.split('/')));
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(content.length));
    hash.update(`${relative}\0`, 'utf8');
    hash.update(size);
    hash.update(content);
  }
  return hash.digest('hex');
}

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('Ctrl-C during constmig bench: it stops after the migration under way and still writes everything', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-bench-interrupt-'));
  try {
    const child = spawn(
      process.execPath,
      [
        CLI,
        'bench',
        ...['--workloads', 'micro', '--sizes', '16MiB', '--modes', 'stop-and-copy'],
        ...['--repeat', '20', '--out', out],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout.resume();
    let stderr = '';
    let interrupted = false;
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      if (!interrupted && /\[ ?1\/20\]/.test(stderr)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.ok(interrupted, `the first migration never finished:\n${stderr}`);
    assert.equal(code, 130, stderr);
    assert.match(stderr, /stopped early: \d+ of 20 migrations run/);
    const json = fs.readdirSync(out).find((f) => f.endsWith('.json'));
    assert.ok(json, 'no results written');
    const results = JSON.parse(fs.readFileSync(path.join(out, json), 'utf8')) as {
      complete: boolean;
      runs: unknown[];
      machine: { limits: { aesGcmMBps: number } | null };
    };
    assert.equal(results.complete, false);
    assert.ok(results.runs.length >= 1 && results.runs.length < 20, `${results.runs.length} runs`);
    assert.ok(
      results.machine.limits && results.machine.limits.aesGcmMBps > 0,
      'the machine was not measured',
    );
    assert.ok(fs.existsSync(path.join(out, json.replace(/\.json$/, ''), 'results.md')), 'no report written');
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

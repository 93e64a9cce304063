import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePortOnBoth, LocalCluster } from '../../src/bench/local-cluster.js';
import { NetnsCluster } from '../../src/bench/netns-cluster.js';
import { unusedPort } from '../helpers/ports.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A user mistake is one line on stderr, a non-zero exit, and never a stack trace. */
function assertOneLineError(result: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
  assert.equal(result.stderr.trim().split('\n').length, 1, `one line, got: ${result.stderr}`);
}

describe('constmig CLI against real host daemons', () => {
  let cluster: LocalCluster;
  let env: Record<string, string>;
  before(async () => {
    cluster = await LocalCluster.start('constmig-cli-test-');
    env = { CONSTMIG_TOKEN: cluster.token };
  });
  after(async () => {
    await cluster.close();
  });

  test('run, ps --json, migrate --json, stop', async () => {
    const port = String(await freePortOnBoth());
    const run = await cli(
      [
        'run',
        'kv',
        '--host',
        cluster.source.controlUrl,
        '--heap',
        '16MiB',
        '--port',
        port,
        '--fill',
        '4MiB',
        '--name',
        'cli-kv',
      ],
      env,
    );
    assert.equal(run.code, 0, run.stderr);
    const id = run.stdout.trim();
    assert.match(id, /^[0-9a-f]{8}$/);

    const ps = await cli(['ps', '--host', cluster.source.controlUrl, '--json'], env);
    const list = JSON.parse(ps.stdout) as {
      id: string;
      name: string;
      state: string;
      stats: { keys: number };
    }[];
    assert.deepEqual(
      list.map((e) => [e.id, e.name, e.state]),
      [[id, 'cli-kv', 'running']],
    );
    assert.ok(list[0]!.stats.keys > 0, 'filled');

    const migrate = await cli(
      ['migrate', id, '--from', cluster.source.controlUrl, '--to', cluster.destination.controlUrl, '--json'],
      env,
    );
    assert.equal(migrate.code, 0, migrate.stderr);
    const report = JSON.parse(migrate.stdout) as Record<string, unknown>;
    assert.equal(report.verified, true);
    assert.equal(report.mode, 'stop-and-copy');
    for (const field of [
      'heapBytes',
      'allocatedBytes',
      'pagesTransferred',
      'bytesOnWire',
      'downtimeMs',
      'totalMs',
      'throughputMBps',
      'sourcePeakRssBytes',
      'destinationPeakRssBytes',
    ]) {
      assert.equal(typeof report[field], 'number', field);
    }
    assert.equal(typeof report.phases, 'object');

    const back = await cli(
      ['migrate', id, '--from', cluster.destination.controlUrl, '--to', cluster.source.controlUrl],
      env,
    );
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /^verified\s+yes/m);
    assert.match(back.stdout, /^downtime\s+\d+\.\d ms$/m);
    assert.match(back.stdout, /^client gap\s+-$/m);
    const home = await cli(
      ['migrate', id, '--from', cluster.source.controlUrl, '--to', cluster.destination.controlUrl],
      env,
    );
    assert.equal(home.code, 0, home.stderr);

    const table = await cli(['ps', '--host', cluster.destination.controlUrl], env);
    assert.match(table.stdout, new RegExp(`${id}\\s+cli-kv\\s+kv\\s+running\\s+127\\.0\\.0\\.2:${port}`));
    assert.match(table.stdout, /NOT SECURE/);
    const stop = await cli(['stop', id, '--host', cluster.destination.controlUrl], env);
    assert.equal(stop.code, 0, stop.stderr);
  });

  test('bad input is one line and a non-zero exit', async () => {
    const src = cluster.source.controlUrl;
    const dst = cluster.destination.controlUrl;
    assertOneLineError(
      await cli(['migrate', 'abcd1234', '--from', src, '--to', dst, '--mode', 'teleport'], env),
      /unknown mode 'teleport'/,
    );
    const migrate = (...flags: string[]) =>
      cli(['migrate', 'abcd1234', '--from', src, '--to', dst, '--mode', 'post-copy', ...flags], env);
    assertOneLineError(
      await migrate('--max-downtime', '0'),
      /--max-downtime: '0' is not a whole number of ms/,
    );
    assertOneLineError(
      await migrate('--reconnect-timeout', '1.5'),
      /--reconnect-timeout: '1.5' is not a whole number of ms/,
    );
    assertOneLineError(await migrate('--bandwidth', '1gbps'), /--bandwidth: ambiguous unit 'gbps'/);
    assertOneLineError(await cli(['bench', '--sizes', 'lots'], env), /--sizes: malformed size 'lots'/);
    assertOneLineError(
      await cli(['bench', '--sizes', '64MiB,256KiB'], env),
      /--sizes: '256KiB' is outside the heap sizes a host runs \(1 MiB to 16 GiB\)/,
    );
    assertOneLineError(await cli(['bench', '--modes', 'teleport'], env), /--modes: unknown mode 'teleport'/);
    assertOneLineError(
      await cli(['bench', '--workloads', 'kv,sort'], env),
      /--workloads: unknown workload 'sort'/,
    );
    assertOneLineError(
      await cli(['bench', '--workloads', 'micro:2'], env),
      /--workloads: 'micro:2': the write share must be a number from 0 to 1/,
    );
    assertOneLineError(await cli(['bench', '--link', 'fast'], env), /--link: 'fast' is not a rate/);
    assertOneLineError(await cli(['bench', '--quick', '--full'], env), /--quick and --full: choose one/);
    assertOneLineError(
      await migrate('--tracker', 'magic'),
      /unknown tracker 'magic' \(available: auto, fault, access\)/,
    );
    assertOneLineError(
      await cli(['run', 'kv', '--host', src, '--heap', 'lots', '--port', '7000'], env),
      /--heap: malformed size 'lots'/,
    );
    assertOneLineError(
      await cli(['run', 'kv', '--host', src, '--heap', '1XB', '--port', '7000'], env),
      /unknown unit/,
    );
    assertOneLineError(
      await cli(['run', 'nosuchapp', '--host', src, '--heap', '8MiB', '--port', '7000'], env),
      /unknown application/,
    );
    const nobody = await unusedPort();
    assertOneLineError(
      await cli(['ps', '--host', `http://127.0.0.1:${nobody}`], env),
      new RegExp(`cannot reach host http://127\\.0\\.0\\.1:${nobody}: connection refused`),
    );
    assertOneLineError(await cli(['stop', 'deadbeef', '--host', src], env), /no enclave with id 'deadbeef'/);
    assertOneLineError(
      await cli(['migrate', 'deadbeef', '--from', src, '--to', dst], env),
      /no enclave with id 'deadbeef'/,
    );
    assertOneLineError(
      await cli(['migrate', 'abcd1234', '--from', src, '--to', dst, '--data-address', 'nowhere'], env),
      /malformed --data-address/,
    );

    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen({ host: '127.0.0.1', port: 0 }, r));
    const busy = String((blocker.address() as net.AddressInfo).port);
    try {
      assertOneLineError(
        await cli(['run', 'kv', '--host', src, '--heap', '8MiB', '--port', busy], env),
        /in use/,
      );
      const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-cli-busy-'));
      assertOneLineError(
        await cli(['host', '--listen', `127.0.0.1:${busy}`, '--state-dir', stateDir]),
        /already in use/,
      );
      fs.rmSync(stateDir, { recursive: true, force: true });
    } finally {
      blocker.close();
    }
  });

  describe('the control token', () => {
    const noToken = { CONSTMIG_TOKEN: '', CONSTMIG_TOKEN_FILE: '' };
    const wrong = 'f'.repeat(64);
    let dir: string;
    let goodFile: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-cli-token-'));
      goodFile = path.join(dir, 'token');
      fs.writeFileSync(goodFile, `${cluster.token}\n`, { mode: 0o600 });
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    test('without one, a refused call prints how to pass it, on one line', async () => {
      const src = cluster.source.controlUrl;
      for (const args of [
        ['ps', '--host', src],
        ['stop', 'deadbeef', '--host', src],
        ['run', 'kv', '--host', src, '--heap', '8MiB', '--port', '7000'],
        ['migrate', 'deadbeef', '--from', src, '--to', cluster.destination.controlUrl],
      ]) {
        assertOneLineError(
          await cli(args, noToken),
          /^constmig: error: http:\/\/127\.0\.0\.1:\d+: missing or wrong control token; pass the host's control token with --token-file <file> .*CONSTMIG_TOKEN_FILE=<file> or CONSTMIG_TOKEN=<token>$/m,
        );
      }
    });

    test('a wrong one is named by where it came from', async () => {
      const wrongFile = path.join(dir, 'wrong');
      fs.writeFileSync(wrongFile, wrong, { mode: 0o600 });
      const host = ['ps', '--host', cluster.source.controlUrl];
      assertOneLineError(
        await cli(host, { ...noToken, CONSTMIG_TOKEN: wrong }),
        /missing or wrong control token; the host refused the token from CONSTMIG_TOKEN$/m,
      );
      assertOneLineError(
        await cli(host, { ...noToken, CONSTMIG_TOKEN_FILE: wrongFile }),
        new RegExp(`the host refused the token from CONSTMIG_TOKEN_FILE=${wrongFile}$`, 'm'),
      );
      assertOneLineError(
        await cli([...host, '--token-file', wrongFile], noToken),
        new RegExp(`the host refused the token from --token-file ${wrongFile}$`, 'm'),
      );
      assertOneLineError(
        await cli(host, { ...noToken, CONSTMIG_TOKEN: 'short' }),
        /CONSTMIG_TOKEN cannot be used as a control token: it holds 5 characters, fewer than 32$/m,
      );
      assertOneLineError(
        await cli([...host, '--token-file', path.join(dir, 'missing')], noToken),
        /cannot read token file .*missing: ENOENT$/m,
      );
    });

    test('--token-file wins over CONSTMIG_TOKEN_FILE, which wins over CONSTMIG_TOKEN', async () => {
      const wrongFile = path.join(dir, 'wrong');
      const ps = ['ps', '--host', cluster.source.controlUrl, '--json'];
      const viaOption = await cli([...ps, '--token-file', goodFile], {
        CONSTMIG_TOKEN_FILE: wrongFile,
        CONSTMIG_TOKEN: wrong,
      });
      assert.equal(viaOption.code, 0, viaOption.stderr);
      assert.ok(Array.isArray(JSON.parse(viaOption.stdout)));
      const viaFileEnv = await cli(ps, { CONSTMIG_TOKEN_FILE: goodFile, CONSTMIG_TOKEN: wrong });
      assert.equal(viaFileEnv.code, 0, viaFileEnv.stderr);
      const viaTokenEnv = await cli(ps, { CONSTMIG_TOKEN_FILE: '', CONSTMIG_TOKEN: cluster.token });
      assert.equal(viaTokenEnv.code, 0, viaTokenEnv.stderr);
    });

    test('--help documents where the token comes from', async () => {
      const help = await cli(['--help']);
      assert.match(help.stdout, /^Authentication:$/m);
      assert.match(help.stdout, /CONSTMIG_TOKEN_FILE/);
      const ps = await cli(['ps', '--help']);
      assert.match(ps.stdout, /--token-file <file>.*\$CONSTMIG_TOKEN_FILE/s);
      const host = await cli(['host', '--help']);
      assert.match(host.stdout, /<state-dir>\/control-token/);
    });
  });
});

test('constmig demo migrates under client load and verifies, with the throughput timeline', async () => {
  const result = await cli(['demo', '--heap', '48MiB', '--json']);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as {
    verified: boolean;
    clientGapMs: number;
    demo: { lostWrites: number; clientOps: number; ackedKeysChecked: number };
    timeline: {
      bucketMs: number;
      opsPer100ms: number[];
      marks: { migrationRequested: number; blackout: number; resumed: number; committed: number };
    };
  };
  assert.equal(report.verified, true);
  assert.equal(report.demo.lostWrites, 0);
  assert.ok(report.demo.clientOps > 0 && report.demo.ackedKeysChecked > 0);
  assert.ok(report.clientGapMs > 0);
  // Before, during and after: buckets on both sides of the migration, the marks in order.
  const { timeline } = report;
  assert.equal(timeline.bucketMs, 100);
  const { migrationRequested, blackout, resumed, committed } = timeline.marks;
  assert.ok(migrationRequested < blackout && blackout < resumed && resumed <= committed);
  assert.ok(timeline.opsPer100ms.length * 100 > committed, 'the timeline runs past COMMIT');
  const total = timeline.opsPer100ms.reduce((a, b) => a + b, 0);
  assert.equal(total, report.demo.clientOps, 'every successful operation is in a bucket');
});

/** The parts of a bench results JSON that the tests look at. */
interface BenchResults {
  schema: number;
  link: { kind: string; rate: string | null; rateBytesPerSec: number | null };
  runs: {
    workload: string;
    mode: string;
    tracker: string | null;
    report: { verified: boolean };
    load: { ops: number; lostWrites: number };
  }[];
}

/** Runs a tiny bench (16 MiB, stop-and-copy and post-copy/access, once) and returns its results JSON. */
async function tinyBench(workloads: string, more: string[] = []): Promise<BenchResults> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-bench-test-'));
  try {
    const run = await cli([
      'bench',
      ...['--workloads', workloads, '--sizes', '16MiB', '--modes', 'stop-and-copy,post-copy'],
      ...['--trackers', 'access', '--repeat', '1', '--out', out, ...more],
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /Post-copy by tracker/);
    const json = fs.readdirSync(out).find((f) => f.endsWith('.json'));
    assert.ok(json, 'no raw results written');
    assert.ok(fs.existsSync(path.join(out, json.replace(/\.json$/, '.txt'))), 'no summary written');
    const report = path.join(out, json.replace(/\.json$/, ''), 'results.md');
    assert.match(fs.readFileSync(report, 'utf8'), /## Goals of the issue/, 'no report written');
    return JSON.parse(fs.readFileSync(path.join(out, json), 'utf8')) as BenchResults;
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

/** Every workload x variant ran once, verified, with a client load that saw work and lost none. */
function assertEveryRunClean(raw: BenchResults, workloads: string[]): void {
  assert.equal(raw.schema, 2);
  assert.deepEqual(
    raw.runs.map((r) => `${r.workload} ${r.mode}/${r.tracker}`).sort(),
    workloads.flatMap((w) => [`${w} post-copy/access`, `${w} stop-and-copy/null`]).sort(),
  );
  for (const r of raw.runs) {
    assert.ok(r.report.verified, `${r.workload} ${r.mode}: not verified`);
    assert.ok(r.load.ops > 0, `${r.workload} ${r.mode}: no client operations`);
    assert.equal(r.load.lostWrites, 0, `${r.workload} ${r.mode}: lost writes`);
  }
}

const netns = NetnsCluster.available();

describe('constmig bench', () => {
  test('a tiny run: every variant migrates verified, and the raw JSON and summary are written', async () => {
    const raw = await tinyBench('kv,micro:0.3');
    assertEveryRunClean(raw, ['kv', 'micro:0.3']);
    assert.deepEqual(raw.link, { kind: 'loopback', rate: null, rateBytesPerSec: null });
  });

  test(
    '--link 1gbit: the same over a shaped link between two network namespaces',
    { skip: netns.ok ? false : `network namespaces unavailable: ${netns.reason}`, timeout: 120_000 },
    async () => {
      const raw = await tinyBench('kv,micro', ['--link', '1gbit']);
      assertEveryRunClean(raw, ['kv', 'micro']);
      assert.deepEqual(raw.link, { kind: 'netns', rate: '1gbit', rateBytesPerSec: 125e6 });
    },
  );

  test('--link where namespaces cannot be set up: one line saying why', async () => {
    // A PATH with bash and nothing else: netns.sh runs, but finds no `ip`.
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-no-ip-'));
    try {
      fs.symlinkSync(
        execFileSync('bash', ['-c', 'command -v bash'], { encoding: 'utf8' }).trim(),
        path.join(bin, 'bash'),
      );
      assertOneLineError(
        await cli(['bench', '--link', '1gbit', '--sizes', '16MiB'], { PATH: bin }),
        /--link 1gbit needs two network namespaces, which this machine cannot set up: netns\.sh: ip not found \(install iproute2\)/,
      );
    } finally {
      fs.rmSync(bin, { recursive: true, force: true });
    }
  });
});

describe('constmig bench report', () => {
  const FIXTURE = fileURLToPath(
    new URL('../../../test/fixtures/bench-results-schema2.json', import.meta.url),
  );

  test('writes results.md and charts beside the JSON, or into --out', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-bench-report-'));
    try {
      const json = path.join(dir, 'run.json');
      fs.copyFileSync(FIXTURE, json);
      const beside = await cli(['bench', 'report', json]);
      assert.equal(beside.code, 0, beside.stderr);
      assert.match(beside.stdout, new RegExp(`${path.join(dir, 'results.md')}\n`));
      assert.match(fs.readFileSync(path.join(dir, 'results.md'), 'utf8'), /^# constmig benchmark results/);
      assert.ok(fs.existsSync(path.join(dir, 'charts', 'downtime-vs-heap.svg')));

      const out = path.join(dir, 'docs');
      const elsewhere = await cli(['bench', 'report', json, '--out', out]);
      assert.equal(elsewhere.code, 0, elsewhere.stderr);
      assert.ok(fs.existsSync(path.join(out, 'results.md')));
      assert.ok(fs.existsSync(path.join(out, 'charts', 'fault-latency.svg')));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a malformed results file is one line naming the field', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-bench-report-'));
    try {
      const json = path.join(dir, 'bad.json');
      const results = JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as { runs: { mode: string }[] };
      results.runs[1]!.mode = 'teleport';
      fs.writeFileSync(json, JSON.stringify(results));
      assertOneLineError(
        await cli(['bench', 'report', json]),
        /bad\.json is not a constmig bench results file: runs\[1\]\.mode: Invalid option/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

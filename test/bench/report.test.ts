import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { analyse, boundRate } from '../../src/bench/report/analysis.js';
import { chartSpecs, medianRun, sumHistograms } from '../../src/bench/report/chart-specs.js';
import { checkGoals, GOALS } from '../../src/bench/report/goals.js';
import { pngRenderer } from '../../src/bench/report/render-charts.js';
import { loadResults, parseResults } from '../../src/bench/report/results-file.js';
import { writeReport } from '../../src/bench/report/write-report.js';
import { UserError } from '../../src/util/errors.js';

/** kv from a real `constmig bench --quick` run, plus a micro workload made from it (test/fixtures). */
const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/bench-results-schema2.json', import.meta.url));

interface FixtureRun {
  workload: string;
  heapBytes: number;
  mode: string;
  tracker: string | null;
  report: { downtimeMs: number; faultLatencyUs: unknown };
  client?: unknown;
}
interface Fixture {
  runs: FixtureRun[];
  failures: unknown[];
  machine: { limits: unknown };
  [key: string]: unknown;
}
const fixture = (): Fixture => JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as Fixture;
const GiB = 2 ** 30;

/**
 * Checks that an SVG is well-formed XML as far as elements go: every tag closes in order, and there
 * is one root <svg>. (No XML parser is a dependency; this is the part a broken renderer would break.)
 */
function assertWellFormedSvg(svg: string): void {
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  const stack: string[] = [];
  for (const [, closing, name, selfClosing] of svg.matchAll(/<(\/?)([a-zA-Z][\w:-]*)[^>]*?(\/?)>/g)) {
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    else if (!selfClosing) stack.push(name!);
  }
  assert.deepEqual(stack, [], 'unclosed elements');
}

describe('bench report on the fixture', () => {
  let out: string;
  let written: Awaited<ReturnType<typeof writeReport>>;
  let markdown: string;
  before(async () => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-report-test-'));
    written = await writeReport(FIXTURE, out);
    markdown = fs.readFileSync(written.markdownFile, 'utf8');
  });
  after(() => fs.rmSync(out, { recursive: true, force: true }));

  test('results.md states the setup at the top', () => {
    assert.equal(written.markdownFile, path.join(out, 'results.md'));
    for (const fact of [
      '| machine | Intel(R) Xeon(R) Processor, 2 cores, 23.6 GiB memory, Linux 6.18.44-fc-v657 |',
      '| software | constmig 0.1.0 (commit b484fdb33b16), Node 20.20.2, OpenSSL 3.0.19 |',
      '| link | loopback (no rate limit) |',
      '| profile | quick (`constmig bench --quick`) |',
      '| machine limits (measured, one core) | AES-256-GCM 1334 MB/s',
      '| repetitions | 1 per workload x heap x mode',
    ]) {
      assert.ok(markdown.includes(fact), `missing: ${fact}`);
    }
  });

  test('the per-workload table holds the median of the cell, its reduction, the bound and the ratio', () => {
    // By hand: kv at 1 GiB ran stop-and-copy three times; the middle downtime is the median.
    const downtimes = fixture()
      .runs.filter((r) => r.workload === 'kv' && r.heapBytes === GiB && r.mode === 'stop-and-copy')
      .map((r) => r.report.downtimeMs)
      .sort((a, b) => a - b);
    assert.equal(downtimes.length, 3);
    const stopAndCopy = downtimes[1]!;
    assert.equal(stopAndCopy, 4100);
    const kv = markdown.slice(markdown.indexOf('### kv'), markdown.indexOf('### micro'));
    assert.match(kv, /\| stop-and-copy \| 3 \| 4100\.0 \| 3900\.0-4998\.0 \| baseline \| /);
    // post-copy/access: downtimes 5.25, 7.5, 4.0 -> 5.25; 1 - 5.25/4100 = 99.87 %.
    assert.match(kv, /\| post-copy\/access \| 3 \| 5\.3 \| 4\.0-7\.5 \| 99\.9 % \| /);
    // The bound: allocated bytes / the measured AES-GCM rate (loopback), the ratio total / bound.
    const analysis = analyse(parseResults(fixture(), FIXTURE));
    const cell = analysis.workloads[0]!.cells.find((c) => c.heapBytes === GiB && c.mode === 'pre-copy')!;
    const boundMs = (cell.allocatedBytes / (1334.3819076089358 * 1e6)) * 1000;
    const row = kv.split('\n').find((l) => l.startsWith('| pre-copy |'))!;
    const cells = row.split('|').map((c) => c.trim());
    assert.equal(cells[7], boundMs.toFixed(0));
    assert.equal(cells[8], `${(cell.totalMs / boundMs).toFixed(2)}x`);
    assert.equal(cells[9], '1/1', 'verified');
    assert.equal(cells[10], '0', 'lost writes');
  });

  test("the paper's figures stand next to the reductions", () => {
    assert.match(markdown, /77-96 % less downtime than MigSGX \(stop-and-copy\)/);
    assert.match(markdown, /98 % less on a 20 GB microbenchmark/);
  });

  test('missing cells: a failed variant and a mode not run at a size are said, not crashed on', () => {
    const micro = markdown.slice(markdown.indexOf('### micro'), markdown.indexOf('## Charts'));
    assert.match(micro, /\| hybrid\/fault \| all 1 failed \| - \|/);
    assert.match(micro, /\| pre-copy \| not run \| 31\.1 \|/);
    assert.match(
      markdown,
      /\| micro \| 1\.00 GiB \| hybrid\/fault \| 1 \| destination did not resume within 60 s \|/,
    );
  });

  test('the goals, pass or fail per workload and size, from the medians', () => {
    assert.match(
      markdown,
      /\| post-copy downtime < 10 ms at every size \| kv \| 1\.00 GiB \| post-copy\/access \| 5\.3 ms \| < 10 ms \| pass \|/,
    );
    assert.match(
      markdown,
      /\| post-copy downtime < 10 ms at every size \| kv \| 256\.0 MiB \| post-copy\/access \| 39\.9 ms \| < 10 ms \| \*\*fail\*\* \|/,
    );
    // Stop-and-copy's 200 MB/s is far from half of 1334 MB/s.
    assert.match(
      markdown,
      /\| kv \| 1\.00 GiB \| stop-and-copy \| 200 MB\/s \| >= 667 MB\/s \| \*\*fail\*\* \|/,
    );
    assert.match(markdown, /- post-copy downtime < 10 ms at every size: 1 of 8 pass/);
  });

  test('charts: one SVG per chart, well-formed, with its marks, linked relatively from results.md', () => {
    const svgs = written.charts.filter((f) => f.endsWith('.svg'));
    assert.deepEqual(svgs.map((f) => path.basename(f)).sort(), [
      'downtime-reduction.svg',
      'downtime-vs-heap.svg',
      'fault-latency.svg',
      'timeline-kv.svg',
      'timeline-micro.svg',
      'total-over-bound.svg',
      'total-vs-bound.svg',
    ]);
    // vega's SVG names each mark of the data by its type; axes and legends have other roles.
    const marksOf: Record<string, string[]> = {
      'downtime-vs-heap.svg': ['line', 'symbol'],
      'downtime-reduction.svg': ['rect'],
      'timeline-kv.svg': ['line', 'rule'],
      'total-over-bound.svg': ['line', 'rule'],
      'fault-latency.svg': ['rect'],
    };
    for (const file of svgs) {
      const svg = fs.readFileSync(file, 'utf8');
      assertWellFormedSvg(svg);
      for (const mark of marksOf[path.basename(file)] ?? ['line'])
        assert.ok(svg.includes(`class="mark-${mark} role-mark`), `${file} lacks its ${mark} marks`);
      assert.ok(markdown.includes(`](charts/${path.basename(file)})`), `results.md does not link ${file}`);
    }
    assert.ok(
      fs.readFileSync(path.join(out, 'charts', 'timeline-kv.svg'), 'utf8').includes('post-copy/fault'),
    );
  });

  test('PNGs beside the SVGs where the machine has a font, else a clear reason', () => {
    const pngs = written.charts.filter((f) => f.endsWith('.png'));
    if (written.pngUnavailable) {
      assert.equal(pngs.length, 0);
      assert.match(markdown, /No PNGs: /);
      return;
    }
    assert.equal(pngs.length, written.charts.length / 2);
    for (const file of pngs)
      assert.deepEqual(
        [...fs.readFileSync(file).subarray(0, 4)],
        [0x89, 0x50, 0x4e, 0x47],
        `${file} is no PNG`,
      );
  });
});

test('pngRenderer: without any font file PNGs are skipped with the reason and a fix', async () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-no-fonts-'));
  try {
    const png = await pngRenderer([empty]);
    assert.ok('unavailable' in png);
    assert.match(
      png.unavailable,
      /no font files in .*only SVGs were written.*apt-get install fonts-dejavu-core/,
    );
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
  }
});

describe('results file', () => {
  test('a malformed field is a UserError naming the file and the path of each field', () => {
    const bad = fixture();
    bad.runs[2]!.report.downtimeMs = 'fast' as unknown as number;
    delete (bad.machine as Record<string, unknown>).cpus;
    assert.throws(
      () => parseResults(bad, 'x.json'),
      (err: Error) =>
        err instanceof UserError &&
        /^x\.json is not a constmig bench results file: /.test(err.message) &&
        err.message.includes('machine.cpus: Invalid input: expected number') &&
        err.message.includes('runs[2].report.downtimeMs: Invalid input: expected number, received string') &&
        !err.message.includes('\n'),
    );
  });

  test('a file that is not JSON, or not there, is a UserError', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-report-bad-'));
    try {
      fs.writeFileSync(path.join(dir, 'cut.json'), '{"runs": [');
      await assert.rejects(
        loadResults(path.join(dir, 'cut.json')),
        (err: Error) => err instanceof UserError && /cut\.json is not JSON/.test(err.message),
      );
      await assert.rejects(
        loadResults(path.join(dir, 'none.json')),
        (err: Error) =>
          err instanceof UserError && /cannot read the results file .*none\.json/.test(err.message),
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file from before schema 2 loads as one kv workload, its client figures from the timelines', () => {
    const old = fixture();
    for (const key of ['schema', 'profile', 'link', 'workloads', 'variants']) delete old[key];
    old.argv = ['bench', '--quick'];
    old.runs = old.runs.filter((r) => r.workload === 'kv');
    for (const r of old.runs) {
      delete (r as Partial<FixtureRun>).workload;
      delete r.client;
    }
    const durationMs = (old.runs[0] as unknown as { timeline: { durationMs?: number } }).timeline;
    delete durationMs.durationMs;
    old.failures = [];
    const results = parseResults(old, 'old.json');
    assert.deepEqual(
      results.workloads.map((w) => w.label),
      ['kv'],
    );
    assert.equal(results.profile, 'quick');
    assert.deepEqual(results.link, { kind: 'loopback', rateBytesPerSec: null });
    assert.equal(results.variants.length, 6);
    assert.deepEqual(results.variants[0], { mode: 'stop-and-copy', tracker: null });
    const withClient = parseResults(fixture(), 'new.json').runs[1]!;
    assert.deepEqual(results.runs[1]!.client, withClient.client, 'the same figures the harness computed');
    // Without durationMs the load ends with its last bucket.
    const first = results.runs[0]!.timeline;
    assert.equal(first.durationMs, first.opsPer100ms.length * first.bucketMs);
  });
});

describe('analysis', () => {
  test('the bound rate is the slower of the link and AES-GCM; loopback has only AES-GCM', () => {
    const limits = { aesGcmMBps: 1000 };
    assert.equal(boundRate({ kind: 'loopback', rateBytesPerSec: null }, limits), 1e9);
    assert.equal(boundRate({ kind: 'netns', rate: '1gbit', rateBytesPerSec: 125e6 }, limits), 125e6);
    assert.equal(boundRate({ kind: 'netns', rate: '10gbit', rateBytesPerSec: 1.25e9 }, limits), 1e9);
    assert.equal(boundRate({ kind: 'loopback', rateBytesPerSec: null }, null), null);
  });

  test('without stop-and-copy, limits or failures the figures that need them are "-" and no data', () => {
    const bare = fixture();
    bare.runs = bare.runs.filter((r) => r.mode !== 'stop-and-copy');
    bare.machine.limits = null;
    const analysis = analyse(parseResults(bare, 'bare.json'));
    const goals = checkGoals(analysis);
    assert.ok(
      goals.filter((g) => g.goal !== GOALS.postcopyDowntime).every((g) => g.status === 'no data'),
      'no bound and no stop-and-copy: nothing to judge those goals on',
    );
    const names = chartSpecs(analysis).map((c) => c.name);
    assert.ok(!names.includes('total-vs-bound') && !names.includes('total-over-bound'));
    assert.ok(names.includes('downtime-reduction'));
  });

  test('the timeline shows the run with the median downtime (the lower middle for an even count)', () => {
    const analysis = analyse(parseResults(fixture(), 'f.json'));
    const kv = analysis.workloads[0]!;
    const cell = kv.cells.find(
      (c) => c.heapBytes === GiB && c.mode === 'post-copy' && c.tracker === 'access',
    )!;
    assert.equal(medianRun(kv.runs, cell)!.report.downtimeMs, 5.25);
    const twoRuns = kv.runs.filter((r) => !(r.mode === 'post-copy' && r.report.downtimeMs === 7.5));
    assert.equal(medianRun(twoRuns, cell)!.report.downtimeMs, 4);
  });

  test('histograms of different lengths sum bucket by bucket', () => {
    assert.deepEqual(sumHistograms([[1, 2], [0, 0, 3], []]), [1, 2, 3]);
    assert.deepEqual(sumHistograms([]), []);
  });
});

test('a run that ended before measuring the machine: the report measures it when asked, and says so', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-report-limits-'));
  try {
    const cut = fixture();
    cut.machine.limits = null;
    const file = path.join(dir, 'cut.json');
    fs.writeFileSync(file, JSON.stringify(cut));
    const without = await writeReport(file, path.join(dir, 'without'));
    assert.match(fs.readFileSync(without.markdownFile, 'utf8'), /not measured \(the run ended before/);
    let measured = 0;
    const limitsNow = () => {
      measured++;
      return {
        aesGcmMBps: 1234,
        aesGcmNodeCryptoMBps: 345,
        dataPath: 'native' as const,
        sha256MBps: 567,
        memcpyMBps: 8900,
        recordBytes: 262144,
      };
    };
    const withLimits = await writeReport(file, path.join(dir, 'with'), { limitsNow });
    const text = fs.readFileSync(withLimits.markdownFile, 'utf8');
    assert.equal(measured, 1);
    assert.match(
      text,
      /1234 MB\/s \(native data path; through node:crypto's API 345 MB\/s\).*measured on .* when this report was made/,
    );
    // A file with its own figures keeps them: the report never replaces what the run measured.
    await writeReport(FIXTURE, path.join(dir, 'own'), { limitsNow });
    assert.equal(measured, 1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

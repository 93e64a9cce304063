import fs from 'node:fs/promises';
import { z } from 'zod';
import { MIGRATION_MODES, hasPostcopy } from '../../migrate/modes.js';
import { TRACKER_KINDS } from '../../trackers/tracker.js';
import { UserError } from '../../util/errors.js';
import { clientThroughput, type Variant } from '../summary.js';

/**
 * The results file `constmig bench` writes (schema 2), reduced to what the report reads. Files from
 * before schema 2 (no `schema`, one kv workload, no `workload` on the runs) load too: the fields they
 * lack get the values they implicitly had.
 */

const finite = z.number().finite();
const nullableFinite = finite.nullable();
const mode = z.enum(MIGRATION_MODES);
const tracker = z.enum(TRACKER_KINDS).nullable().default(null);
/** Runs of files from before several workloads were all kv. */
const workloadLabel = z.string().min(1).default('kv');

const timeline = z
  .object({
    bucketMs: z.number().positive(),
    // The oldest files lack it: the load then counts as stopped at the end of its last bucket.
    durationMs: finite.optional(),
    opsPer100ms: z.array(finite),
    marks: z.object({
      migrationRequested: finite,
      blackout: nullableFinite,
      resumed: nullableFinite,
      committed: nullableFinite,
    }),
  })
  .transform((t) => ({ ...t, durationMs: t.durationMs ?? t.opsPer100ms.length * t.bucketMs }));

const client = z.object({
  beforeOpsPerSec: nullableFinite,
  duringOpsPerSec: nullableFinite,
  afterOpsPerSec: nullableFinite,
  duringVsBefore: nullableFinite,
  afterVsBefore: nullableFinite,
});

const run = z
  .object({
    workload: workloadLabel,
    heapBytes: z.number().int().positive(),
    mode,
    tracker,
    repeat: z.number().int(),
    index: z.number().int(),
    report: z.object({
      allocatedBytes: finite,
      downtimeMs: finite,
      totalMs: finite,
      postcopyMs: nullableFinite,
      precopyRounds: finite,
      dirtyRateMBps: nullableFinite,
      demandFaults: finite,
      faultLatencyUs: z
        .object({
          p50: finite,
          p99: finite,
          max: finite,
          // histogram[i] counts faults in [2^i, 2^(i+1)) µs; runs from before it was recorded have none.
          histogram: z.array(z.number().int().nonnegative()).default([]),
        })
        .nullable(),
      throughputMBps: finite,
      bytesOnWire: finite,
      destinationPeakRssBytes: finite,
      sourceCpuMs: finite,
      destinationCpuMs: finite,
      verified: z.boolean(),
      sourceDigest: z.string().nullable(),
    }),
    load: z.object({ ops: finite, errors: finite, clientGapMs: finite, lostWrites: z.number().int() }),
    contention: z.object({ cpuPressureSomePct: nullableFinite }),
    timeline,
    // The oldest files predate the client figures; they follow from the timeline.
    client: client.optional(),
  })
  .transform((r) => ({ ...r, client: r.client ?? clientThroughput(r.timeline, hasPostcopy(r.mode)) }));

const failure = z.object({
  workload: workloadLabel,
  heapBytes: z.number().int().positive(),
  mode,
  tracker,
  repeat: z.number().int(),
  error: z.string(),
  logsKeptIn: z.string().optional(),
});

const limits = z.object({
  aesGcmMBps: z.number().positive(),
  // Since the native data path (issue 6); older files measured node:crypto only.
  aesGcmNodeCryptoMBps: finite.optional(),
  dataPath: z.enum(['native', 'node:crypto']).optional(),
  sha256MBps: finite,
  memcpyMBps: finite,
});

const link = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('loopback'), rateBytesPerSec: z.null() }),
  z.object({ kind: z.literal('netns'), rate: z.string(), rateBytesPerSec: z.number().positive() }),
]);

const workload = z.object({
  label: z.string().min(1),
  kind: z.string(),
  writeShare: z.number().min(0).max(1).nullable().optional(),
  summary: z.string().optional(),
});

/** The version of the results JSON's layout (2: workloads; 1 had kv only and no `schema`). */
export const RESULTS_SCHEMA = 2;

const resultsFile = z.object({
  schema: z.literal(RESULTS_SCHEMA).optional(),
  complete: z.boolean(),
  startedAt: z.string(),
  writtenAt: z.string(),
  argv: z.array(z.string()),
  profile: z.enum(['quick', 'full', 'custom']).optional(),
  options: z.object({
    sizes: z.array(z.number().int().positive()).min(1),
    repeat: z.number().int().positive(),
    verify: z.boolean(),
  }),
  link: link.default({ kind: 'loopback', rateBytesPerSec: null }),
  machine: z.object({
    cpuModel: z.string(),
    cpus: z.number().int(),
    totalMemBytes: finite,
    kernel: z.string().optional(),
    hostname: z.string().optional(),
    loadAvgAtStart: z.array(finite),
    loadAvgNow: z.array(finite).optional(),
    versions: z.looseObject({
      node: z.string(),
      constmig: z.string().optional(),
      commit: z.string().optional(),
    }),
    limits: limits.nullable().default(null),
  }),
  workloads: z.array(workload).optional(),
  variants: z.array(z.object({ mode, tracker })).optional(),
  runs: z.array(run),
  failures: z.array(failure).default([]),
  notes: z.array(z.string()).default([]),
});

export type BenchResults = z.output<typeof resultsFile> & {
  profile: NonNullable<z.output<typeof resultsFile>['profile']>;
  workloads: z.output<typeof workload>[];
  variants: Variant[];
};
export type ResultsRun = z.output<typeof run>;
export type ResultsFailure = z.output<typeof failure>;
export type Link = z.output<typeof link>;

/** Reads and checks a results file; a file that is not one is a UserError naming the file and the field. */
export async function loadResults(file: string): Promise<BenchResults> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read the results file ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${file} is not JSON: ${(err as Error).message}`);
  }
  return parseResults(json, file);
}

export function parseResults(json: unknown, file: string): BenchResults {
  const parsed = resultsFile.safeParse(json);
  if (!parsed.success) {
    throw new UserError(`${file} is not a constmig bench results file: ${issuesLine(parsed.error.issues)}`);
  }
  return withImplicitFields(parsed.data);
}

const SHOWN_ISSUES = 3;

/** The first few of zod's issues on one line (the CLI prints a user mistake as one line), each at its path. */
function issuesLine(issues: readonly z.core.$ZodIssue[]): string {
  const where = (path: readonly PropertyKey[]) =>
    path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('') ||
    '(top level)';
  const shown = issues.slice(0, SHOWN_ISSUES).map((i) => `${where(i.path)}: ${i.message}`);
  const more = issues.length - shown.length;
  return `${shown.join('; ')}${more > 0 ? ` (and ${more} more)` : ''}`;
}

/** What files from before schema 2 leave out: the profile, the workload list and the variants run. */
function withImplicitFields(data: z.output<typeof resultsFile>): BenchResults {
  const labels = [...new Set([...data.runs, ...data.failures].map((r) => r.workload))];
  const listed = data.workloads ?? [];
  const workloads = [
    ...listed,
    ...labels.filter((l) => !listed.some((w) => w.label === l)).map((label) => ({ label, kind: label })),
  ];
  const seen = new Map<string, Variant>();
  for (const v of [...(data.variants ?? []), ...data.runs, ...data.failures])
    seen.set(`${v.mode}/${v.tracker}`, { mode: v.mode, tracker: v.tracker });
  return {
    ...data,
    profile: data.profile ?? (data.argv.includes('--quick') ? 'quick' : 'custom'),
    workloads,
    variants: [...seen.values()].sort(byModeThenTracker),
  };
}

/** The harness's order: modes as MIGRATION_MODES lists them, then the tracker (none first). */
const byModeThenTracker = (a: Variant, b: Variant) =>
  MIGRATION_MODES.indexOf(a.mode) - MIGRATION_MODES.indexOf(b.mode) ||
  (a.tracker ? TRACKER_KINDS.indexOf(a.tracker) + 1 : 0) -
    (b.tracker ? TRACKER_KINDS.indexOf(b.tracker) + 1 : 0);

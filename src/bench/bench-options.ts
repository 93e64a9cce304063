import { type AppKind, isWorkloadKind, WORKLOADS } from '../apps/registry.js';
import { MAX_HEAP_BYTES, MIN_HEAP_BYTES } from '../heap/secure-heap.js';
import { isMigrationMode, MIGRATION_MODES, type MigrationMode } from '../migrate/modes.js';
import { TRACKER_KINDS, type TrackerKind } from '../trackers/tracker.js';
import { errorMessage, UserError } from '../util/errors.js';
import { parseSize } from '../util/size.js';

/** kv's mixes are YCSB's: B (95 % reads) by default, A (50/50) as `kv:0.5`. */
const KV_DEFAULT_WRITE_SHARE = 0.05;
const KV_SUMMARY = 'the RESP key-value store, zipfian GET/SET (YCSB-like)';

/** A workload as the benchmark runs it: which application, and the share of its operations that write. */
export interface WorkloadChoice {
  /** As the user wrote it, normalised: `kv`, `kv:0.5`, `micro`, `micro:0.2`. */
  label: string;
  kind: AppKind;
  writeShare: number;
  summary: string;
}

export interface BenchOptions {
  profile: 'quick' | 'full' | 'custom';
  workloads: WorkloadChoice[];
  sizes: number[];
  modes: MigrationMode[];
  trackers: TrackerKind[];
  repeat: number;
  verify: boolean;
  maxDowntimeMs: number;
  /** tbf rate of a link between two network namespaces (e.g. '10gbit'); null: loopback. */
  link: string | null;
  out: string;
}

/** The options as typed on the command line (`constmig bench`, `npm run bench`). */
export interface RawBenchOptions {
  profile: BenchOptions['profile'];
  workloads: string;
  sizes: string;
  modes: string;
  trackers: string;
  repeat: string;
  verify: boolean;
  maxDowntime: string;
  link: string | null;
  out: string;
}

export const defaultWriteShare = (kind: AppKind): number =>
  kind === 'kv' ? KV_DEFAULT_WRITE_SHARE : WORKLOADS[kind].defaultWriteShare;

export function parseWorkload(text: string): WorkloadChoice {
  const [name = '', share, ...rest] = text.trim().split(':');
  const known = ['kv', ...Object.keys(WORKLOADS)];
  if (!(name === 'kv' || isWorkloadKind(name)) || rest.length > 0)
    throw new UserError(
      `--workloads: unknown workload '${text.trim()}' (available: ${known.join(', ')}; add :SHARE for the share of writes, e.g. kv:0.5)`,
    );
  const kind: AppKind = name;
  let writeShare = defaultWriteShare(kind);
  if (share !== undefined) {
    writeShare = Number(share);
    if (share.trim() === '' || !(writeShare >= 0 && writeShare <= 1))
      throw new UserError(`--workloads: '${text.trim()}': the write share must be a number from 0 to 1`);
  }
  return {
    label: writeShare === defaultWriteShare(kind) ? kind : `${kind}:${writeShare}`,
    kind,
    writeShare,
    summary: kind === 'kv' ? KV_SUMMARY : WORKLOADS[kind].summary,
  };
}

function sizeOf(text: string): number {
  let bytes: number;
  try {
    bytes = parseSize(text.trim());
  } catch (err) {
    throw new UserError(`--sizes: ${errorMessage(err)}`);
  }
  // Checked here, not by the host after the bench has started: the same range a host accepts.
  if (!(bytes >= MIN_HEAP_BYTES && bytes <= MAX_HEAP_BYTES)) {
    throw new UserError(`--sizes: '${text.trim()}' is outside the heap sizes a host runs (1 MiB to 16 GiB)`);
  }
  return bytes;
}

const LINK_RATE = /^\d+(\.\d+)?(k|m|g)?bit$/;

/** A tc rate in bits per second ('10gbit' -> 1e10). */
export function linkRateBitsPerSec(rate: string): number {
  const match = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/.exec(rate)!;
  return Number(match[1]) * { k: 1e3, m: 1e6, g: 1e9, '': 1 }[match[2] ?? '']!;
}

export function parseBenchOptions(raw: RawBenchOptions): BenchOptions {
  const workloads = raw.workloads.split(',').map(parseWorkload);
  const labels = workloads.map((w) => w.label);
  const twice = labels.find((l, i) => labels.indexOf(l) !== i);
  if (twice) throw new UserError(`--workloads: '${twice}' is listed twice`);
  const sizes = [...new Set(raw.sizes.split(',').map((s) => sizeOf(s)))].sort((a, b) => a - b);
  const modes = raw.modes.split(',').map((m) => m.trim());
  for (const mode of modes) {
    if (!isMigrationMode(mode))
      throw new UserError(`--modes: unknown mode '${mode}' (available: ${MIGRATION_MODES.join(', ')})`);
  }
  const trackers = [...new Set(raw.trackers.split(',').map((t) => t.trim()))];
  for (const tracker of trackers) {
    if (!(TRACKER_KINDS as readonly string[]).includes(tracker))
      throw new UserError(
        `--trackers: unknown tracker '${tracker}' (available: ${TRACKER_KINDS.join(', ')})`,
      );
  }
  const repeat = Number(raw.repeat);
  if (!(Number.isInteger(repeat) && repeat >= 1))
    throw new UserError(`--repeat: '${raw.repeat}' is not 1 or more`);
  const maxDowntimeMs = Number(raw.maxDowntime);
  if (!(Number.isInteger(maxDowntimeMs) && maxDowntimeMs >= 1))
    throw new UserError(`--max-downtime: '${raw.maxDowntime}' is not a whole number of ms`);
  if (raw.link !== null && !LINK_RATE.test(raw.link))
    throw new UserError(`--link: '${raw.link}' is not a rate such as 1gbit, 10gbit or 500mbit`);
  return {
    profile: raw.profile,
    workloads,
    sizes,
    modes: modes as MigrationMode[],
    trackers: trackers as TrackerKind[],
    repeat,
    verify: raw.verify,
    maxDowntimeMs,
    link: raw.link,
    out: raw.out,
  };
}

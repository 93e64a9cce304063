import type { EnclaveInfo } from '../host/api-schema.js';
import type { MigrationReport } from '../migrate/report.js';
import { formatBytes } from '../util/size.js';

const ms = (v: number | null | undefined) => (v == null ? '-' : `${v.toFixed(1)} ms`);

/** The human form of a migration report: the figures an operator looks at first, then the phases. */
export function renderReport(report: MigrationReport): string {
  const rows: [string, string][] = [
    ['migration', `${report.migrationId.slice(0, 16)}  ${report.mode}`],
    ['enclave', `${report.enclaveId} (${report.app})  ${report.from} -> ${report.to}`],
    ['tee', report.tee],
    ['heap', `${formatBytes(report.heapBytes)}, ${formatBytes(report.allocatedBytes)} allocated`],
    [
      'transferred',
      `${report.pagesTransferred} pages in ${report.framesTransferred} frames, ${formatBytes(report.bytesOnWire)} on the wire`,
    ],
    ['downtime', ms(report.downtimeMs)],
    ['client gap', ms(report.clientGapMs)],
    ['total', ms(report.totalMs)],
    ['throughput', `${report.throughputMBps.toFixed(0)} MB/s`],
    ...liveRows(report),
    [
      'peak RSS',
      `source ${formatBytes(report.sourcePeakRssBytes)}, destination ${formatBytes(report.destinationPeakRssBytes)}`,
    ],
    [
      'CPU',
      `source ${report.sourceCpuMs.toFixed(0)} ms, destination ${report.destinationCpuMs.toFixed(0)} ms`,
    ],
    ['verified', report.verified ? 'yes (destination digest equals source digest)' : 'NO'],
  ];
  const phases = Object.entries(report.phases)
    .sort(([, a], [, b]) => a - b)
    .map(([name, t]) => `${name} +${t.toFixed(1)}`)
    .join('  ');
  rows.push(['phases (ms)', phases]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

/** The rows only pre-copy or post-copy have. */
function liveRows(report: MigrationReport): [string, string][] {
  const rows: [string, string][] = [];
  if (report.precopyRounds > 0) {
    rows.push([
      'pre-copy',
      `${report.precopyRounds} rounds (stopped: ${report.precopyStop}), application wrote ${report.dirtyRateMBps?.toFixed(1) ?? '-'} MB/s`,
    ]);
  }
  if (report.postcopyMs !== null) {
    const latency = report.faultLatencyUs
      ? `, fault latency p50 ${us(report.faultLatencyUs.p50)} p99 ${us(report.faultLatencyUs.p99)} max ${us(report.faultLatencyUs.max)}`
      : '';
    rows.push([
      'post-copy',
      `${ms(report.postcopyMs)} START -> COMMIT; ${report.pagesPushed} pages pushed, ${report.pagesFetched} fetched; ${report.demandFaults} faults (${report.tracker} tracker${report.trackerReason ? `: ${report.trackerReason}` : ''})${latency}`,
    ]);
  }
  if (report.reconnects > 0) rows.push(['reconnects', `${report.reconnects} (the link broke after START)`]);
  return rows;
}

const us = (value: number): string =>
  value >= 1000 ? `${(value / 1000).toFixed(1)} ms` : `${value.toFixed(0)} µs`;

export function renderEnclaves(list: EnclaveInfo[]): string {
  if (list.length === 0) return 'no enclaves';
  const header = ['ID', 'NAME', 'APP', 'STATE', 'ADDRESS', 'HEAP', 'ALLOCATED', 'KEYS', 'TEE'];
  const rows = list.map((e) => [
    e.id,
    e.name,
    e.app,
    e.state,
    e.address,
    formatBytes(e.heapBytes),
    e.stats.allocatedBytes === undefined ? '-' : formatBytes(e.stats.allocatedBytes),
    e.stats.keys === undefined ? '-' : String(e.stats.keys),
    e.teeSecure ? e.tee : `${e.tee.split(' ')[0]} (NOT SECURE)`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

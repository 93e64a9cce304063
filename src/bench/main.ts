/**
 * Migration benchmark: stop-and-copy downtime and throughput per heap size, side by side in one run
 * with the machine's own AES-256-GCM, SHA-256 and memcpy throughput. Prints a table and ratios, and
 * writes every raw figure to bench-results/. Run: `npm run bench -- --sizes 256MiB,1GiB,4GiB`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { requestMigration } from '../cli/commands/migrate.js';
import { MigrationProgressView } from '../cli/migrate-progress.js';
import type { EnclaveInfo } from '../host/api-schema.js';
import type { HostDaemon } from '../host/daemon.js';
import type { MigrationReport } from '../migrate/report.js';
import { errorMessage } from '../util/errors.js';
import { formatBytes, parseSize } from '../util/size.js';
import { freePortOnBoth, LocalCluster } from './local-cluster.js';
import { measurePhysicalLimits } from './physical-limits.js';

interface Run {
  heapBytes: number;
  verify: boolean;
  report: MigrationReport;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function benchSize(heapBytes: number, repeat: number, runs: Run[]): Promise<void> {
  const cluster = await LocalCluster.start('constmig-bench-');
  try {
    const port = await freePortOnBoth();
    const hosts: [HostDaemon, HostDaemon] = [cluster.source, cluster.destination];
    const info = await cluster.client(hosts[0]).call<EnclaveInfo>('POST', '/v1/enclaves', {
      app: 'kv',
      heapBytes,
      port,
      fillBytes: heapBytes,
    });
    // Ping-pong the same enclave between the hosts, alternating the verify digest on and off.
    let at = 0;
    for (let i = 0; i < repeat * 2; i++) {
      const verify = i % 2 === 1;
      const report = await requestMigration(
        cluster.client(hosts[at]!),
        info.id,
        { to: hosts[1 - at]!.controlUrl, mode: 'stop-and-copy', verify },
        new MigrationProgressView(false),
      );
      runs.push({ heapBytes, verify, report });
      process.stderr.write(
        `  ${formatBytes(heapBytes)} verify=${verify}: downtime ${report.downtimeMs.toFixed(0)} ms, ${report.throughputMBps.toFixed(0)} MB/s\n`,
      );
      at = 1 - at;
    }
  } finally {
    await cluster.close();
  }
}

async function main(): Promise<void> {
  const options = new Command('bench')
    .option('--sizes <list>', 'heap sizes', '256MiB,1GiB,4GiB')
    .option('--repeat <n>', 'migrations per size and verify setting', '3')
    .option('--out <dir>', 'where to write the raw JSON', 'bench-results')
    .parse()
    .opts<{ sizes: string; repeat: string; out: string }>();
  const sizes = options.sizes.split(',').map((s) => parseSize(s));
  const repeat = Number(options.repeat);

  process.stderr.write('measuring this machine (AES-256-GCM, SHA-256, memcpy)…\n');
  const limits = measurePhysicalLimits();
  const runs: Run[] = [];
  for (const size of sizes) {
    process.stderr.write(`stop-and-copy, ${formatBytes(size)} heap:\n`);
    await benchSize(size, repeat, runs);
  }

  const rows = sizes.flatMap((heapBytes) =>
    [false, true].map((verify) => {
      const mine = runs.filter((r) => r.heapBytes === heapBytes && r.verify === verify).map((r) => r.report);
      const allocated = mine[0]!.allocatedBytes;
      const downtime = median(mine.map((r) => r.downtimeMs));
      const throughput = median(mine.map((r) => r.throughputMBps));
      const overhead = median(mine.map((r) => r.destinationPeakRssBytes - r.allocatedBytes));
      return { heapBytes, verify, allocated, downtime, throughput, overhead, n: mine.length };
    }),
  );
  const lines = [
    `machine: AES-256-GCM ${limits.aesGcmMBps.toFixed(0)} MB/s (one core, ${limits.recordBytes / 1024} KiB records), SHA-256 ${limits.sha256MBps.toFixed(0)} MB/s, memcpy ${limits.memcpyMBps.toFixed(0)} MB/s`,
    '',
    'heap      verify  allocated   downtime(ms)  ms/GiB   throughput(MB/s)  vs AES-GCM  dest RSS - allocated   n',
    ...rows.map((r) =>
      [
        formatBytes(r.heapBytes).padEnd(9),
        String(r.verify).padEnd(6),
        formatBytes(r.allocated).padEnd(11),
        r.downtime.toFixed(0).padStart(12),
        (r.downtime / (r.allocated / 2 ** 30)).toFixed(0).padStart(7),
        r.throughput.toFixed(0).padStart(18),
        (r.throughput / limits.aesGcmMBps).toFixed(2).padStart(11),
        formatBytes(r.overhead).padStart(21),
        String(r.n).padStart(4),
      ].join(' '),
    ),
    '',
    '(medians; downtime = source stops serving -> destination serves; throughput = page bytes / blackout transfer time)',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  fs.mkdirSync(options.out, { recursive: true });
  const file = path.join(options.out, `stop-and-copy-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify({ limits, rows, runs }, null, 2));
  process.stderr.write(`raw results: ${file}\n`);
}

main().catch((err) => {
  process.stderr.write(`bench: error: ${errorMessage(err)}\n`);
  process.exit(1);
});

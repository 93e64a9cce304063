import type { HeapAllocator } from '../../heap/allocator.js';
import { PAGE_SIZE } from '../../heap/constants.js';
import type { SecureHeap } from '../../heap/secure-heap.js';
import type { KvStore } from './kv-store.js';

/** Figures about the server that live outside the store. */
export interface ServerFacts {
  port: number;
  startedAtMs: number;
  connectedClients: number;
  totalConnections: number;
  totalCommands: number;
}

export interface InfoSources {
  store: KvStore;
  heap: SecureHeap;
  allocator: HeapAllocator;
  facts: ServerFacts;
}

type Field = [name: string, value: string | number];

const SECTIONS: Record<string, { title: string; fields: (sources: InfoSources) => Field[] }> = {
  server: { title: 'Server', fields: serverFields },
  clients: { title: 'Clients', fields: clientFields },
  memory: { title: 'Memory', fields: memoryFields },
  stats: { title: 'Stats', fields: statsFields },
  keyspace: { title: 'Keyspace', fields: keyspaceFields },
};
const DEFAULT_SECTIONS = Object.keys(SECTIONS);
const ALL_SECTIONS = new Set(['default', 'all', 'everything']);

/**
 * The text of INFO [section ...] in Redis's format: `# Title` lines, `name:value` lines, a blank line
 * between sections. Unknown sections are left out, as Redis does.
 */
export function renderInfo(sources: InfoSources, requested: readonly string[]): string {
  const wanted = requested.map((s) => s.toLowerCase());
  const names =
    wanted.length === 0 || wanted.some((s) => ALL_SECTIONS.has(s))
      ? DEFAULT_SECTIONS
      : DEFAULT_SECTIONS.filter((name) => wanted.includes(name));
  return names
    .map((name) => {
      const section = SECTIONS[name]!;
      const lines = section.fields(sources).map(([field, value]) => `${field}:${value}\r\n`);
      return `# ${section.title}\r\n${lines.join('')}`;
    })
    .join('\r\n');
}

function serverFields({ facts }: InfoSources): Field[] {
  const uptimeSeconds = Math.floor((Date.now() - facts.startedAtMs) / 1000);
  return [
    ['redis_version', '7.0.0'],
    ['redis_mode', 'standalone'],
    ['server_impl', 'constmig-kv'],
    ['arch_bits', 64],
    ['process_id', process.pid],
    ['tcp_port', facts.port],
    ['uptime_in_seconds', uptimeSeconds],
    ['uptime_in_days', Math.floor(uptimeSeconds / 86400)],
  ];
}

function clientFields({ facts }: InfoSources): Field[] {
  return [['connected_clients', facts.connectedClients]];
}

function memoryFields({ heap, allocator, store }: InfoSources): Field[] {
  const heapStats = allocator.stats();
  const used = heapStats.allocatedPages * PAGE_SIZE;
  const table = store.stats();
  return [
    ['used_memory', used],
    ['used_memory_human', bytesToHuman(used)],
    ['used_memory_dataset', heapStats.liveBytes],
    ['maxmemory', heap.byteLength],
    ['maxmemory_human', bytesToHuman(heap.byteLength)],
    ['maxmemory_policy', 'noeviction'],
    ['heap_page_size', PAGE_SIZE],
    ['heap_pages', heapStats.pageCount],
    ['heap_allocated_pages', heapStats.allocatedPages],
    ['heap_metadata_pages', heapStats.metadataPages],
    ['heap_live_bytes', heapStats.liveBytes],
    ['kv_buckets', table.buckets],
    ['kv_rehashing', table.rehashing],
  ];
}

function statsFields({ facts }: InfoSources): Field[] {
  return [
    ['total_connections_received', facts.totalConnections],
    ['total_commands_processed', facts.totalCommands],
  ];
}

function keyspaceFields({ store }: InfoSources): Field[] {
  // Redis lists only databases that hold keys.
  return store.size === 0 ? [] : [['db0', `keys=${store.size},expires=0,avg_ttl=0`]];
}

/** Redis's bytesToHuman: 1023B, 1.00K, 1.50M, ... */
export function bytesToHuman(bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T', 'P'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes}B` : `${value.toFixed(2)}${units[unit]}`;
}

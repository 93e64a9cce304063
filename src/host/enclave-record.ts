import type { AppKind } from '../apps/registry.js';
import type { EnclaveInfo, EnclaveState } from './api-schema.js';
import type { EnclaveProcess } from './enclave-process.js';

/** What a host knows of one enclave it runs. */
export interface EnclaveRecord {
  id: string;
  name: string;
  app: AppKind;
  heapBytes: number;
  port: number;
  state: EnclaveState;
  process: EnclaveProcess;
  measurement: string;
  tee: string;
  teeSecure: boolean;
  startedAt: string;
  ticket?: string;
}

export function describeRecord(
  record: EnclaveRecord,
  bind: string,
  stats: Record<string, number>,
): EnclaveInfo {
  return {
    id: record.id,
    name: record.name,
    app: record.app,
    state: record.state,
    heapBytes: record.heapBytes,
    port: record.port,
    address: `${bind}:${record.port}`,
    pid: record.process.pid,
    measurement: record.measurement,
    tee: record.tee,
    teeSecure: record.teeSecure,
    startedAt: record.startedAt,
    stats,
  };
}

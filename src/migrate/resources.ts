/** Resource figures of this (enclave) process, for the migration report. */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

export interface CpuMark {
  user: number;
  system: number;
}

export function cpuMark(): CpuMark {
  const { user, system } = process.cpuUsage();
  return { user, system };
}

/** CPU milliseconds (user, system) spent since the mark. */
export function cpuSince(mark: CpuMark): { userMs: number; systemMs: number } {
  const now = process.cpuUsage();
  return { userMs: (now.user - mark.user) / 1000, systemMs: (now.system - mark.system) / 1000 };
}

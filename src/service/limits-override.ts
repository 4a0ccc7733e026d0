// A project's resource limits override as callers change it: each field they
// set replaces the stored one, -1 returns it to the service's default, 0
// means no limit, a field left out keeps what is stored. Checked before
// anything is written, with the bounds the configuration has.
import { DomainError } from "../errors.js";
import type { LimitsRecord } from "../store/records.js";

export type LimitsChange = { readonly [K in keyof LimitsRecord]?: number | undefined };

/** Smallest and largest value each field takes (besides 0, no limit, and -1, the default). */
const BOUNDS: Record<keyof LimitsRecord, readonly [min: number, max: number, what: string]> = {
  memoryMb: [64, 1_048_576, "memory_mb must be -1 (default), 0 (no limit) or from 64 to 1048576 MiB"],
  cpus: [0.01, 1024, "cpus must be -1 (default), 0 (no limit) or from 0.01 to 1024"],
  pids: [64, 4_194_304, "pids must be -1 (default), 0 (no limit) or from 64 to 4194304"],
  shmMb: [1, 1_048_576, "shm_mb must be -1 (default), 0 (the engine's default) or from 1 to 1048576 MiB"],
  sizeQuotaMb: [1, 1_073_741_824, "size_quota_mb must be -1 (default), 0 (no quota) or from 1 to 1073741824 MiB"],
};

/** Whether the change sets any field at all. */
export function isLimitsChange(change: LimitsChange | undefined): change is LimitsChange {
  return change !== undefined && Object.values(change).some((value) => value !== undefined);
}

/** Throws an invalid_argument DomainError naming the first bad field. */
export function checkLimitsChange(change: LimitsChange): void {
  for (const [field, [min, max, what]] of Object.entries(BOUNDS) as [keyof LimitsRecord, (typeof BOUNDS)[keyof LimitsRecord]][]) {
    const value = change[field];
    if (value === undefined || value === -1 || value === 0) continue;
    const whole = field !== "cpus";
    if (!Number.isFinite(value) || value < min || value > max || (whole && !Number.isInteger(value))) {
      throw new DomainError("invalid_argument", what);
    }
  }
}

/** The stored override after `change`; null when nothing is overridden any more. */
export function applyLimitsChange(stored: LimitsRecord | null | undefined, change: LimitsChange): LimitsRecord | null {
  const next: Record<string, number> = { ...(stored ?? {}) };
  for (const [field, value] of Object.entries(change)) {
    if (value === undefined) continue;
    if (value === -1) delete next[field];
    else next[field] = value;
  }
  return Object.keys(next).length === 0 ? null : (next as LimitsRecord);
}

/** What the runtime enforces of an override: the size quota is the service's to watch, not the runtime's. */
export function runtimeLimits(override: LimitsRecord | null | undefined): Omit<LimitsRecord, "sizeQuotaMb"> | undefined {
  if (!override) return undefined;
  const { sizeQuotaMb: _quota, ...enforced } = override;
  return Object.keys(enforced).length === 0 ? undefined : enforced;
}

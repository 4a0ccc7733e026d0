// Which WAL objects retention removes from the bucket: those no kept base
// backup needs, by the rule the runtime applies to the local archive
// (PointInTimeRecovery.pruneWal): a generation no kept base backup belongs to
// goes whole, and in a kept one the segments older than the oldest start
// segment of its base backups go. Decided from the state's records only, never
// from what the local archive still holds: a host that lost its archive must
// not take the bucket's copy with it.
import type { BackupRecord, OffsiteWalRecord } from "../store/records.js";
import { PARTIAL_SUFFIX } from "./object-layout.js";

export interface WalNeed {
  readonly generation: string;
  readonly startSegment: string;
}

/** A succeeded base backup's WAL needs; undefined for a dump or an unfinished one. */
export function walNeedOf(record: BackupRecord): WalNeed | undefined {
  if (record.state !== "succeeded" || record.format !== "base" || !record.walGeneration || !record.walStartSegment) return undefined;
  return { generation: record.walGeneration, startSegment: record.walStartSegment };
}

/**
 * Of one project's WAL objects, those to delete. Nothing while the project
 * has no kept base backup (WAL alone restores nothing, but the first base
 * backup may be on its way); generations newer than the newest kept base
 * backup's are always kept (a recovery started them and their first base
 * backup is yet to come). History files of a kept generation are kept.
 */
export function walObjectsToDrop(backups: readonly BackupRecord[], wal: readonly OffsiteWalRecord[]): OffsiteWalRecord[] {
  const oldestStart = new Map<string, string>();
  for (const need of backups.map(walNeedOf)) {
    if (!need) continue;
    const known = oldestStart.get(need.generation);
    if (known === undefined || need.startSegment < known) oldestStart.set(need.generation, need.startSegment);
  }
  if (oldestStart.size === 0) return [];
  const newestKept = [...oldestStart.keys()].sort().at(-1)!;
  return wal.filter((record) => {
    if (record.generation > newestKept) return false;
    const start = oldestStart.get(record.generation);
    if (start === undefined) return true;
    if (record.file.endsWith(".history")) return false;
    const segment = record.file.endsWith(PARTIAL_SUFFIX) ? record.file.slice(0, -PARTIAL_SUFFIX.length) : record.file;
    return segment < start;
  });
}

// Which WAL a database's archive must keep: for every base backup that
// retention kept, its generation from its start segment on. The current
// generation is always kept (pg_receivewal is writing into it), from its
// newest segment on when no kept base backup needs more of it: WAL from
// before a database's first base backup can never be replayed.
import type { WalGeneration } from "../runtime/runtime.js";
import type { BackupRecord } from "../store/records.js";

/** A WAL segment's file name (timeline, log, segment): 24 hex digits, ordered as they sort. */
const SEGMENT = /^[0-9A-F]{24}$/;

/** Generation id → first segment to keep; what PointInTimeRecovery.pruneWal takes. */
export function walToKeep(keptBases: readonly BackupRecord[], generations: readonly WalGeneration[]): Map<string, string> {
  const known = new Set(generations.map((generation) => generation.id));
  const keep = new Map<string, string>();
  for (const base of keptBases) {
    if (base.format !== "base" || base.state !== "succeeded" || !base.walGeneration || !base.walStartSegment) continue;
    if (!known.has(base.walGeneration)) continue;
    const start = keep.get(base.walGeneration);
    if (start === undefined || base.walStartSegment < start) keep.set(base.walGeneration, base.walStartSegment);
  }
  const current = generations[generations.length - 1];
  if (current && !keep.has(current.id)) {
    const segments = current.segments.filter((segment) => SEGMENT.test(segment.name));
    // An empty generation keeps everything it will get: the lowest name there is.
    keep.set(current.id, segments[segments.length - 1]?.name ?? "0".repeat(24));
  }
  return keep;
}

// The recovery window: the seconds a point-in-time restore (or a clone) can
// reach, from the base backups kept and the WAL streamed since. Computed here
// and nowhere else, so GetDatabase, ListBackups and the restore's own refusal
// always agree.
//
// A base backup B of WAL generation G covers [B finished, end of G], where the
// end of G is now while G is the current generation and still streaming, and
// otherwise the last time G received WAL (after that the database either did
// not change, or was restored into a new generation). A point-in-time restore
// starts a new generation, so the window can have a hole: from the restore
// until the new generation's first base backup finishes. The window reports
// its outer bounds; a target in the hole is refused by `baseBackupFor` all the same.
import { DomainError } from "../errors.js";
import type { WalGeneration } from "../runtime/runtime.js";
import type { BackupRecord } from "../store/records.js";

export interface RecoveryWindowView {
  /** When the oldest kept base backup finished. */
  readonly earliest: Date;
  /** Now while WAL is streamed into the newest generation a base backup starts; else when it last received WAL. */
  readonly latest: Date;
  /** Whether `latest` is now: the newest generation with a base backup is streaming. */
  readonly streaming: boolean;
}

/**
 * The base backups a recovery can start from: succeeded, of this life of the
 * database (a database deleted and made again starts over), of a WAL
 * generation the runtime still keeps.
 */
export function usableBaseBackups(records: readonly BackupRecord[], generations: readonly WalGeneration[], databaseCreatedAt: Date): BackupRecord[] {
  const kept = new Set(generations.map((generation) => generation.id));
  return records.filter(
    (record) =>
      record.format === "base" &&
      record.state === "succeeded" &&
      record.finishedAt !== null &&
      record.walGeneration !== null &&
      kept.has(record.walGeneration) &&
      record.startedAt.getTime() >= databaseCreatedAt.getTime(),
  );
}

interface Coverage {
  readonly base: BackupRecord;
  readonly from: Date;
  readonly to: Date;
  readonly streaming: boolean;
}

function coverage(base: BackupRecord, generations: readonly WalGeneration[], now: Date): Coverage {
  const index = generations.findIndex((generation) => generation.id === base.walGeneration);
  const generation = generations[index]!;
  const from = base.finishedAt!;
  if (index === generations.length - 1 && generation.streaming) return { base, from, to: now, streaming: true };
  // A base backup is consistent on its own: its end is reachable even before any WAL arrives after it.
  const received = generation.lastReceivedAt?.getTime() ?? 0;
  return { base, from, to: new Date(Math.max(received, from.getTime())), streaming: false };
}

/** The window of `bases` (see usableBaseBackups); undefined when there is none. */
export function recoveryWindow(bases: readonly BackupRecord[], generations: readonly WalGeneration[], now: Date): RecoveryWindowView | undefined {
  if (bases.length === 0) return undefined;
  const spans = bases.map((base) => coverage(base, generations, now));
  const earliest = Math.min(...spans.map((span) => span.from.getTime()));
  const last = spans.reduce((best, span) => (span.to.getTime() > best.to.getTime() || (span.to.getTime() === best.to.getTime() && span.streaming) ? span : best));
  return { earliest: new Date(earliest), latest: last.to, streaming: last.streaming };
}

/**
 * The base backup a recovery to `time` starts from: the newest that finished
 * at or before it and whose generation's WAL reaches it. Throws out_of_range,
 * naming the window, when there is none.
 */
export function baseBackupFor(bases: readonly BackupRecord[], generations: readonly WalGeneration[], time: Date, now: Date): BackupRecord {
  const window = recoveryWindow(bases, generations, now);
  if (!window) throw noRecoveryWindow();
  const at = time.getTime();
  const covering = bases
    .map((base) => coverage(base, generations, now))
    .filter((span) => span.from.getTime() <= at && at <= span.to.getTime())
    .sort((a, b) => b.from.getTime() - a.from.getTime());
  if (covering[0]) return covering[0].base;
  const inside = window.earliest.getTime() <= at && at <= window.latest.getTime();
  throw new DomainError(
    "out_of_range",
    `target time ${iso(time)} is outside the recovery window: the database can be restored to any second from ${iso(window.earliest)} to ${iso(window.latest)}` +
      (inside ? " (this target falls between a point-in-time restore and the first base backup after it, which nothing covers)" : ""),
  );
}

/** Whether `base` (a usable base backup) can reach `time`. */
export function covers(base: BackupRecord, generations: readonly WalGeneration[], time: Date, now: Date): boolean {
  const span = coverage(base, generations, now);
  return span.from.getTime() <= time.getTime() && time.getTime() <= span.to.getTime();
}

/**
 * Whether a recovery to `time` from `base` must replay everything its
 * generation holds rather than stop at `time`: the target is at or past the
 * end of the WAL received, where no commit follows it for PostgreSQL to stop
 * at (it refuses to promote short of its target). The state there is the
 * state at the end: nothing was written after it. A generation streaming
 * from a live database is never such an end: a flush of its WAL puts a commit
 * after any target up to now.
 */
export function replaysAll(base: BackupRecord, generations: readonly WalGeneration[], time: Date, live: boolean): boolean {
  const generation = generations.find((candidate) => candidate.id === base.walGeneration);
  if (!generation || (live && generation.streaming && generation === generations[generations.length - 1])) return false;
  const end = Math.max(generation.lastReceivedAt?.getTime() ?? 0, base.finishedAt?.getTime() ?? 0);
  return time.getTime() >= end;
}

export function noRecoveryWindow(): DomainError {
  return new DomainError(
    "failed_precondition",
    "the database has no base backup yet, so there is no recovery window: the window starts when its first base backup finishes (soon after the database is first ready)",
  );
}

/** A time as the API writes it (RFC 3339, UTC). */
export function iso(time: Date): string {
  return time.toISOString();
}

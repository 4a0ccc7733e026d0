// The recovery window and the base backup a recovery starts from, from
// backup records and WAL generations as the runtime reports them; and the WAL
// a database's archive must keep. Pure rules: the runtime's part is tested
// against real PostgreSQL in the e2e point-in-time tests.
import { describe, expect, it } from "vitest";
import { baseBackupFor, recoveryWindow, replaysAll, usableBaseBackups } from "../../src/backup/recovery-window.js";
import { walToKeep } from "../../src/backup/wal-retention.js";
import { DomainError } from "../../src/errors.js";
import type { WalGeneration } from "../../src/runtime/runtime.js";
import { newBackupRecord, type BackupRecord } from "../../src/store/records.js";

const P = "6f1c2b7e-9a4d-4e2f-8c1b-3d5e7f9a1b2c";
const at = (hhmm: string): Date => new Date(`2026-11-30T${hhmm}:00Z`);
const created = at("00:00");

function base(id: string, started: string, finished: string, generation: string, startSegment: string, state: BackupRecord["state"] = "succeeded"): BackupRecord {
  return {
    ...newBackupRecord({ id, projectId: P, slug: "shop", kind: "scheduled", startedAt: at(started), format: "base" }),
    state,
    finishedAt: at(finished),
    walGeneration: generation,
    walStartSegment: startSegment,
  };
}

function generation(id: string, streaming: boolean, lastReceived: string | null, segments: string[] = []): WalGeneration {
  return {
    id,
    streaming,
    lastReceivedAt: lastReceived === null ? null : at(lastReceived),
    bytes: segments.length * 16,
    segments: segments.map((name, index) => ({ name, bytes: 16, complete: index < segments.length - 1 })),
  };
}

const G1 = "20261130T000000Z";
const G2 = "20261130T120000Z";
const seg = (n: number, timeline = 1): string => `${String(timeline).padStart(8, "0")}00000000${n.toString(16).toUpperCase().padStart(8, "0")}`;

describe("recovery window", () => {
  it("is absent without a usable base backup: failed ones, other lives and forgotten generations do not count", () => {
    const generations = [generation(G1, true, "09:00")];
    const records = [
      base("a", "01:00", "01:01", G1, seg(2), "failed"),
      // Before the database was made again: another life's backup.
      { ...base("b", "01:00", "01:01", G1, seg(2)), startedAt: new Date(created.getTime() - 1000) },
      base("c", "01:00", "01:01", "20261129T000000Z", seg(2)),
      { ...newBackupRecord({ id: "d", projectId: P, slug: "shop", kind: "manual", startedAt: at("02:00") }), state: "succeeded" as const, finishedAt: at("02:01") },
    ];
    expect(usableBaseBackups(records, generations, created)).toEqual([]);
    expect(recoveryWindow([], generations, at("10:00"))).toBeUndefined();
    expect(() => baseBackupFor([], generations, at("05:00"), at("10:00"))).toThrow(/no base backup yet/);
  });

  it("runs from the oldest base backup's end to now while the current generation streams, and grows with time", () => {
    const generations = [generation(G1, true, "09:00")];
    const bases = [base("b2", "06:00", "06:05", G1, seg(8)), base("b1", "01:00", "01:02", G1, seg(2))];
    expect(recoveryWindow(bases, generations, at("10:00"))).toEqual({ earliest: at("01:02"), latest: at("10:00"), streaming: true });
    expect(recoveryWindow(bases, generations, at("11:00"))?.latest).toEqual(at("11:00"));
  });

  it("ends at the last WAL received when nothing streams", () => {
    const generations = [generation(G1, false, "09:00")];
    const bases = [base("b1", "01:00", "01:02", G1, seg(2))];
    expect(recoveryWindow(bases, generations, at("10:00"))).toEqual({ earliest: at("01:02"), latest: at("09:00"), streaming: false });
    expect(() => baseBackupFor(bases, generations, at("09:30"), at("10:00"))).toThrow(/outside the recovery window.*2026-11-30T01:02:00.000Z to 2026-11-30T09:00:00.000Z/);
  });

  it("picks the newest base backup that finished before the target and whose generation reaches it", () => {
    // G1 until a point-in-time restore at 12:00; G2 since, its first base backup finished 12:10.
    const generations = [generation(G1, false, "12:00"), generation(G2, true, "13:00")];
    const b1 = base("b1", "01:00", "01:02", G1, seg(2));
    const b2 = base("b2", "06:00", "06:05", G1, seg(8));
    const b3 = base("b3", "12:05", "12:10", G2, seg(1, 2));
    const bases = [b3, b2, b1];
    const now = at("14:00");
    expect(baseBackupFor(bases, generations, at("03:00"), now).id).toBe("b1");
    expect(baseBackupFor(bases, generations, at("06:05"), now).id).toBe("b2");
    expect(baseBackupFor(bases, generations, at("11:59"), now).id).toBe("b2");
    expect(baseBackupFor(bases, generations, at("13:30"), now).id).toBe("b3");
    expect(recoveryWindow(bases, generations, now)).toEqual({ earliest: at("01:02"), latest: now, streaming: true });
  });

  it("refuses with out_of_range naming the window: before it, after it, and in the hole after a point-in-time restore", () => {
    const generations = [generation(G1, false, "12:00"), generation(G2, true, "13:00")];
    const bases = [base("b3", "12:05", "12:10", G2, seg(1, 2)), base("b1", "01:00", "01:02", G1, seg(2))];
    const now = at("14:00");
    for (const target of [at("00:30"), at("14:01")]) {
      const error = catchError(() => baseBackupFor(bases, generations, target, now));
      expect(error).toBeInstanceOf(DomainError);
      expect(error).toMatchObject({ kind: "out_of_range" });
      expect(error.message).toContain("from 2026-11-30T01:02:00.000Z to 2026-11-30T14:00:00.000Z");
    }
    const hole = catchError(() => baseBackupFor(bases, generations, at("12:07"), now));
    expect(hole).toMatchObject({ kind: "out_of_range" });
    expect(hole.message).toMatch(/between a point-in-time restore and the first base backup after it/);
  });
});

describe("replaying everything a generation holds", () => {
  const b1 = base("b1", "01:00", "01:02", G1, seg(2));
  it("is what a target at or past the end of a generation that no longer streams asks for", () => {
    const generations = [generation(G1, false, "12:00"), generation(G2, true, "13:00")];
    expect(replaysAll(b1, generations, at("12:00"), true)).toBe(true);
    expect(replaysAll(b1, generations, at("11:59"), true)).toBe(false);
  });

  it("never for the streaming generation of a live database (its WAL is flushed first), always at its end when the server is gone", () => {
    const generations = [generation(G1, true, "12:00")];
    expect(replaysAll(b1, generations, at("12:30"), true)).toBe(false);
    expect(replaysAll(b1, generations, at("12:30"), false)).toBe(true);
    expect(replaysAll(b1, generations, at("11:00"), false)).toBe(false);
  });
});

describe("WAL to keep", () => {
  it("keeps each kept base backup's generation from its oldest start segment, and the current one from its newest segment", () => {
    const generations = [
      generation("20261128T000000Z", false, "01:00", [seg(1)]),
      generation(G1, false, "12:00", [seg(1), seg(2), seg(3), seg(9)]),
      generation(G2, true, "13:00", ["00000002.history", seg(10, 2), seg(11, 2)]),
    ];
    const keep = walToKeep([base("b2", "06:00", "06:05", G1, seg(3)), base("b1", "01:00", "01:02", G1, seg(2)), base("x", "02:00", "02:01", G1, seg(1), "failed")], generations);
    expect([...keep.entries()]).toEqual([
      [G1, seg(2)],
      [G2, seg(11, 2)],
    ]);
  });

  it("keeps the current generation's own base backup's start, and an empty current generation whole", () => {
    const generations = [generation(G2, true, "13:00", [seg(10, 2), seg(11, 2), seg(12, 2)])];
    expect([...walToKeep([base("b3", "12:05", "12:10", G2, seg(11, 2))], generations)]).toEqual([[G2, seg(11, 2)]]);
    expect([...walToKeep([], [generation(G2, true, null)])]).toEqual([[G2, "0".repeat(24)]]);
    expect([...walToKeep([], [])]).toEqual([]);
  });
});

function catchError(work: () => unknown): DomainError {
  try {
    work();
  } catch (error) {
    return error as DomainError;
  }
  throw new Error("expected an error");
}

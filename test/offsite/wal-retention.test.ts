// Which WAL objects retention deletes from the bucket: the rule of the local
// archive (pruneWal), decided from the base backups' records alone.
import { describe, expect, it } from "vitest";
import { walObjectsToDrop } from "../../src/offsite/wal-retention.js";
import { newBackupRecord, type BackupRecord, type OffsiteWalRecord } from "../../src/store/records.js";

const PROJECT = "550e8400-e29b-41d4-a716-446655440000";

/** A base backup as the point-in-time work records one (format, generation, start segment). */
function base(generation: string, startSegment: string, state: BackupRecord["state"] = "succeeded"): BackupRecord {
  const record = newBackupRecord({ id: `20261126t000000000z-${generation.slice(0, 12).toLowerCase().padEnd(12, "0")}`, projectId: PROJECT, slug: "app", kind: "scheduled", startedAt: new Date() });
  return { ...record, state, format: "base", walGeneration: generation, walStartSegment: startSegment } as BackupRecord;
}

function dump(): BackupRecord {
  return { ...newBackupRecord({ id: "20261126t000000000z-dddddddddddd", projectId: PROJECT, slug: "app", kind: "manual", startedAt: new Date() }), state: "succeeded" };
}

function wal(generation: string, file: string): OffsiteWalRecord {
  return { projectId: PROJECT, generation, file, sha256: "0".repeat(64), sizeBytes: 1, copiedAt: new Date() };
}

const G1 = "20261120T000000Z";
const G2 = "20261124T000000Z";
const G3 = "20261126T000000Z";
const seg = (n: number) => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, "0")}`;

describe("WAL retention in the bucket", () => {
  const archive = [
    wal(G1, seg(1)),
    wal(G1, seg(2)),
    wal(G2, "00000002.history"),
    wal(G2, seg(3)),
    wal(G2, seg(4)),
    wal(G2, `${seg(5)}.partial`),
    wal(G3, seg(6)),
  ];

  it("keeps everything while the project has no finished base backup (dumps only, or the first base backup still running)", () => {
    expect(walObjectsToDrop([dump()], archive)).toEqual([]);
    expect(walObjectsToDrop([base(G2, seg(4), "running"), base(G2, seg(4), "failed")], archive)).toEqual([]);
  });

  it("drops generations no kept base backup belongs to, and older segments of kept ones; keeps history files and newer generations", () => {
    const dropped = walObjectsToDrop([dump(), base(G2, seg(4))], archive).map((record) => `${record.generation}/${record.file}`);
    expect(dropped).toEqual([`${G1}/${seg(1)}`, `${G1}/${seg(2)}`, `${G2}/${seg(3)}`]);
  });

  it("keeps from the oldest start segment when a generation has several base backups", () => {
    const dropped = walObjectsToDrop([base(G2, seg(5)), base(G2, seg(4)), base(G1, seg(2))], archive).map((record) => record.file);
    expect(dropped).toEqual([seg(1), seg(3)]);
  });
});

// Retention with a test clock: old backups go, files and records together;
// the newest good backup and running ones stay whatever their age.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { backupFilePath } from "../../src/backup/backup-paths.js";
import { expiredBackups } from "../../src/backup/retention.js";
import { RuntimeError } from "../../src/runtime/runtime.js";
import { newBackupRecord, newDatabaseRecord, type BackupRecord } from "../../src/store/records.js";
import { controlledDump, managerBed, TestClock, type ManagerBed } from "../support/backup-fakes.js";

const DAY = 24 * 60 * 60 * 1000;
const START = new Date("2026-11-01T03:00:00Z");

function record(id: string, daysAgo: number, state: BackupRecord["state"], now = START): BackupRecord {
  const startedAt = new Date(now.getTime() - daysAgo * DAY);
  return { ...newBackupRecord({ id, projectId: "p", slug: "shop", kind: "scheduled", startedAt }), state };
}

describe("expiredBackups", () => {
  it("selects backups at least retentionDays old", () => {
    const records = [record("a", 0, "succeeded"), record("b", 6.9, "succeeded"), record("c", 7, "succeeded"), record("d", 30, "failed")];
    expect(expiredBackups(records, START, 7).map((r) => r.id)).toEqual(["c", "d"]);
  });

  it("never selects the newest succeeded backup, however old", () => {
    const records = [record("failed-new", 1, "failed"), record("good-old", 40, "succeeded"), record("good-older", 50, "succeeded")];
    expect(expiredBackups(records, START, 7).map((r) => r.id)).toEqual(["good-older"]);
  });

  it("for a deleted database, selects every backup, the newest good one too, once the deleted period is over", () => {
    const records = [record("final", 0, "succeeded"), record("old", 6, "succeeded"), record("running", 1, "running")];
    const deleted = { deletedAt: START, days: 30 };
    expect(expiredBackups(records, new Date(START.getTime() + 29 * DAY), 7, new Set(), deleted)).toEqual([]);
    expect(expiredBackups(records, new Date(START.getTime() + 30 * DAY), 7, new Set(), deleted).map((r) => r.id)).toEqual(["final", "old"]);
  });

  it("keeps the newest succeeded backup of each format: a dump to download, a base backup to restore to a point in time from", () => {
    const base = (id: string, daysAgo: number, state: BackupRecord["state"]): BackupRecord => ({ ...record(id, daysAgo, state), format: "base" });
    const records = [record("dump-new", 1, "failed"), base("base-new", 2, "failed"), record("dump-old", 40, "succeeded"), base("base-old", 30, "succeeded"), base("base-older", 50, "succeeded")];
    expect(expiredBackups(records, START, 7).map((r) => r.id)).toEqual(["base-older"]);
  });

  it("never selects a running backup or one in use", () => {
    const records = [record("good", 0, "succeeded"), record("running", 30, "running"), record("pinned", 30, "succeeded")];
    expect(expiredBackups(records, START, 7, new Set(["pinned"]))).toEqual([]);
  });
});

describe("retention in the manager", () => {
  let bed: ManagerBed;
  const clock = new TestClock(START);
  const target = { projectId: randomUUID(), slug: "shop" };
  beforeEach(async () => {
    bed = await managerBed();
    clock.set(START);
  });
  afterEach(() => bed.cleanup());

  it("deletes files and records past retention after each backup, keeping the newest good one", async () => {
    const manager = await bed.open({ now: clock.now, retentionDays: 7 });
    const ids: string[] = [];
    for (let day = 0; day < 10; day++) {
      ids.push((await manager.create(target, "scheduled", { wait: true })).id);
      clock.advanceDays(1);
    }
    // Each backup prunes its project: the one of day 9 deleted days 0..2.
    expect((await manager.list(target.projectId)).map((r) => r.id)).toEqual(ids.slice(3).reverse());
    // Now day 10: the scheduled pass prunes days 0..3; the backup of day 9 is the newest.
    await manager.pruneAll();
    const kept = (await manager.list(target.projectId)).map((r) => r.id);
    expect(kept).toEqual(ids.slice(4).reverse());
    for (const id of ids.slice(0, 4)) expect(existsSync(backupFilePath(bed.backupDir, "shop", id))).toBe(false);
    for (const id of ids.slice(4)) expect(existsSync(backupFilePath(bed.backupDir, "shop", id))).toBe(true);
    // The expiry shown is when retention deletes it.
    const newest = (await manager.list(target.projectId))[0]!;
    expect(newest.expiresAt?.getTime()).toBe(newest.startedAt.getTime() + 7 * DAY);
  });

  it("keeps the only good backup through weeks of failures, and prunes the old failures", async () => {
    const manager = await bed.open({ now: clock.now, retentionDays: 7 });
    const good = await manager.create(target, "scheduled", { wait: true });
    bed.runtime.dumpWith = () => {
      const dump = controlledDump();
      setImmediate(() => dump.destroy(new RuntimeError("failed", "pg_dump of shop failed (exit code 1)")));
      return dump;
    };
    for (let day = 1; day <= 20; day++) {
      clock.advanceDays(1);
      expect((await manager.create(target, "scheduled", { wait: true })).state).toBe("failed");
    }
    await manager.pruneAll();
    const left = await manager.list(target.projectId);
    expect(left.find((r) => r.id === good.id)?.state).toBe("succeeded");
    expect(existsSync(backupFilePath(bed.backupDir, "shop", good.id))).toBe(true);
    // Failures of days 14..20 are younger than 7 days; 13 and older are gone.
    expect(left.filter((r) => r.state === "failed")).toHaveLength(7);
  });

  it("never touches a running backup, however long it has been running", async () => {
    const manager = await bed.open({ now: clock.now, retentionDays: 7 });
    await manager.create(target, "scheduled", { wait: true });
    clock.advanceDays(1);
    await manager.create(target, "scheduled", { wait: true });
    const dump = controlledDump();
    bed.runtime.dumpWith = () => dump;
    clock.advanceDays(1);
    const running = await manager.create(target, "manual", { wait: false });
    clock.advanceDays(60);
    await manager.pruneAll();
    const left = await manager.list(target.projectId);
    expect(left.map((r) => r.id)).toContain(running.id);
    expect(left.find((r) => r.id === running.id)?.state).toBe("running");
    dump.end("SELECT 1;\n");
  });

  it("keeps a deleted database's backups for the deleted period, then forgets them and the record", async () => {
    const manager = await bed.open({ now: clock.now, retentionDays: 7, deletedRetentionDays: 30 });
    const old = await manager.create(target, "scheduled", { wait: true });
    clock.advanceDays(5);
    const final = await manager.create(target, "final", { wait: true });
    // Deleted now: a deleted record's updatedAt is when it was deleted.
    const deletedAt = clock.now();
    await bed.store.insertDatabase({
      ...newDatabaseRecord({ projectId: target.projectId, slug: target.slug, runtime: "process", sealedPassword: "" }, deletedAt),
      state: "deleted",
    });
    for (const backup of await manager.list(target.projectId)) {
      expect(backup.expiresAt?.getTime()).toBe(deletedAt.getTime() + 30 * DAY);
    }
    // Past the ordinary 7 days, the older backup is kept all the same.
    clock.advanceDays(29);
    await manager.pruneAll();
    expect((await manager.list(target.projectId)).map((r) => r.id).sort()).toEqual([old.id, final.id].sort());
    expect((await manager.download(target.projectId, final.id)).sizeBytes).toBe(final.sizeBytes);
    clock.advanceDays(1);
    await manager.pruneAll();
    expect(await manager.list(target.projectId)).toEqual([]);
    expect(existsSync(backupFilePath(bed.backupDir, "shop", final.id))).toBe(false);
    // The record went with its last backup: the slug is free again.
    expect(await bed.store.getDatabase(target.projectId)).toBeUndefined();
  });

  it("never forgets a record an Ensure has made new meanwhile", async () => {
    const manager = await bed.open({ now: clock.now, retentionDays: 7, deletedRetentionDays: 30 });
    await bed.store.insertDatabase(newDatabaseRecord({ projectId: target.projectId, slug: target.slug, runtime: "process", sealedPassword: "x" }, clock.now()));
    clock.advanceDays(60);
    await manager.pruneAll();
    expect(await bed.store.deleteDatabase(target.projectId, { onlyIfState: "deleted" })).toBe(false);
    expect((await bed.store.getDatabase(target.projectId))?.state).toBe("provisioning");
  });
});

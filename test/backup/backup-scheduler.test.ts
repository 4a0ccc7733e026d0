// The schedule: bounded concurrency, catch-up after downtime, verify after
// scheduled backups, retention after each pass.
import { randomUUID } from "node:crypto";
import { PassThrough, Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BackupScheduler, type ScheduledDatabase } from "../../src/backup/backup-scheduler.js";
import { ConcurrencyLimit } from "../../src/backup/concurrency-limit.js";
import { createLogger } from "../../src/log.js";
import type { BackupRecord } from "../../src/store/records.js";
import { databaseRecord, managerBed, sqlText, TestClock, type ManagerBed } from "../support/backup-fakes.js";

const HOUR = 60 * 60 * 1000;
const silent = createLogger({ level: "silent" });

describe("ConcurrencyLimit", () => {
  it("never runs more than its limit, and runs everything", async () => {
    const limit = new ConcurrencyLimit(3);
    let active = 0;
    let peak = 0;
    const done = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        limit.run(async () => {
          active++;
          peak = Math.max(peak, active);
          await new Promise((resolve) => setTimeout(resolve, 1 + (i % 4)));
          active--;
          return i;
        }),
      ),
    );
    expect(peak).toBe(3);
    expect(done).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });
});

describe("BackupScheduler", () => {
  const clock = new TestClock(new Date("2026-11-20T12:00:00Z"));
  const databases: ScheduledDatabase[] = [
    { projectId: "backed-up-today", slug: "a", createdAt: new Date("2026-01-01T00:00:00Z") },
    { projectId: "backed-up-two-days-ago", slug: "b", createdAt: new Date("2026-01-01T00:00:00Z") },
    { projectId: "never-backed-up-old", slug: "c", createdAt: new Date("2026-01-01T00:00:00Z") },
    { projectId: "never-backed-up-new", slug: "d", createdAt: new Date("2026-11-20T11:00:00Z") },
  ];
  const lastSuccess: Record<string, Date> = {
    "backed-up-today": new Date("2026-11-20T03:00:00Z"),
    "backed-up-two-days-ago": new Date("2026-11-18T03:00:00Z"),
  };

  function scheduler(overrides: Partial<ConstructorParameters<typeof BackupScheduler>[0]> = {}): BackupScheduler {
    return new BackupScheduler({
      cron: "0 3 * * *",
      concurrency: 2,
      verify: false,
      catchUpDelayMs: 0,
      databases: async () => databases,
      lastSuccess: async (projectId) => lastSuccess[projectId],
      backup: async () => ({ state: "succeeded", id: "x" }) as BackupRecord,
      verifyBackup: async () => undefined,
      prune: async () => undefined,
      now: clock.now,
      logger: silent,
      ...overrides,
    });
  }

  it("measures the interval of the schedule", () => {
    expect(scheduler().intervalMs()).toBe(24 * HOUR);
    expect(scheduler({ cron: "0 */6 * * *" }).intervalMs()).toBe(6 * HOUR);
  });

  it("catches up on databases whose last good backup is older than one interval", async () => {
    expect((await scheduler().dueForCatchUp()).map((d) => d.projectId)).toEqual(["backed-up-two-days-ago", "never-backed-up-old"]);
  });

  it("runs the catch-up on start, bounded, then prunes", async () => {
    const backedUp: string[] = [];
    let pruned = 0;
    const s = scheduler({
      backup: async (target) => {
        backedUp.push(target.projectId);
        return { state: "succeeded", id: "x" } as BackupRecord;
      },
      prune: async () => void pruned++,
    });
    s.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await s.stop();
    expect(backedUp.sort()).toEqual(["backed-up-two-days-ago", "never-backed-up-old"]);
    expect(pruned).toBe(1);
  });

  it("claims every slot since the newest any replica ran, and runs them as one pass", async () => {
    const backedUp: string[] = [];
    const offered: Date[][] = [];
    const s = scheduler({
      lastSlot: async () => new Date("2026-11-17T03:00:00Z"),
      claimSlots: async (slots) => (offered.push([...slots]), slots.slice(1)),
      backup: async (target) => (backedUp.push(target.projectId), { state: "succeeded", id: "x" }) as BackupRecord,
    });
    await s.runDueSlots("test");
    expect(offered.map((slots) => slots.map((slot) => slot.toISOString()))).toEqual([
      ["2026-11-18T03:00:00.000Z", "2026-11-19T03:00:00.000Z", "2026-11-20T03:00:00.000Z"],
    ]);
    expect(backedUp.sort()).toEqual(databases.map((d) => d.projectId).sort());
  });

  it("runs nothing for a slot another replica already claimed", async () => {
    const backedUp: string[] = [];
    const s = scheduler({
      lastSlot: async () => new Date("2026-11-20T03:00:00Z"),
      claimSlots: async () => [],
      backup: async (target) => (backedUp.push(target.projectId), { state: "succeeded", id: "x" }) as BackupRecord,
    });
    await s.runDueSlots("test");
    // Once slots are recorded, the catch-up follows them, not the backups' age.
    await s.catchUp();
    expect(backedUp).toEqual([]);
  });

  it("starts again after a stop (a replica that regains the lead)", async () => {
    let passes = 0;
    const s = scheduler({ prune: async () => void passes++ });
    s.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await s.stop();
    s.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await s.stop();
    expect(passes).toBe(2);
  });

  it("verifies scheduled backups that succeeded when verify is on", async () => {
    const verified: string[] = [];
    await scheduler({
      verify: true,
      backup: async (target) => ({ state: target.slug === "b" ? "failed" : "succeeded", id: `backup-${target.slug}` }) as BackupRecord,
      verifyBackup: async (_target, id) => void verified.push(id),
    }).runPass(databases, "test");
    expect(verified.sort()).toEqual(["backup-a", "backup-c", "backup-d"]);
  });
});

describe("scheduled backups through the manager", () => {
  let bed: ManagerBed;
  beforeEach(async () => {
    bed = await managerBed();
  });
  afterEach(() => bed.cleanup());

  it("backs up every ready database of this runtime with at most `concurrency` dumps at once", async () => {
    const created = new Date("2026-01-01T00:00:00Z");
    for (let i = 0; i < 7; i++) await bed.store.insertDatabase(databaseRecord(randomUUID(), `db${i}`, created));
    await bed.store.insertDatabase({ ...databaseRecord(randomUUID(), "elsewhere", created), runtime: "docker" });
    await bed.store.insertDatabase({ ...databaseRecord(randomUUID(), "broken", created), state: "failed" });
    let active = 0;
    let peak = 0;
    bed.runtime.dumpWith = () => {
      active++;
      peak = Math.max(peak, active);
      const dump = new PassThrough();
      setTimeout(() => {
        active--;
        dump.end(sqlText(50));
      }, 30);
      return dump;
    };
    const manager = await bed.open({ schedule: { cron: "0 3 * * *", concurrency: 2 } });
    const pass = manager.scheduler!;
    await pass.runPass(
      (await bed.store.listDatabases()).filter((d) => d.state === "ready" && d.runtime === "process"),
      "test",
    );
    expect(peak).toBe(2);
    expect(bed.runtime.dumps.map((t) => t.slug).sort()).toEqual(["db0", "db1", "db2", "db3", "db4", "db5", "db6"]);
    for (const database of (await bed.store.listDatabases()).filter((d) => d.slug.startsWith("db"))) {
      expect(await manager.list(database.projectId)).toMatchObject([{ kind: "scheduled", state: "succeeded" }]);
    }
  });

  it("catches up at start for a database whose last good backup is too old", async () => {
    const clock = new TestClock(new Date("2026-11-20T12:00:00Z"));
    const stale = databaseRecord(randomUUID(), "stale", new Date("2026-01-01T00:00:00Z"));
    const fresh = databaseRecord(randomUUID(), "fresh", new Date("2026-01-01T00:00:00Z"));
    await bed.store.insertDatabase(stale);
    await bed.store.insertDatabase(fresh);
    bed.runtime.dumpWith = () => Readable.from([sqlText(5)]);
    const seeding = await bed.open({ now: clock.now, retentionDays: 30 });
    clock.set(new Date("2026-11-17T03:00:00Z"));
    await seeding.create(stale, "scheduled", { wait: true });
    clock.set(new Date("2026-11-20T03:00:00Z"));
    await seeding.create(fresh, "scheduled", { wait: true });
    await seeding.close();

    clock.set(new Date("2026-11-20T12:00:00Z"));
    bed.runtime.dumps.length = 0;
    const manager = await bed.open({ now: clock.now, retentionDays: 30, schedule: { cron: "0 3 * * *", catchUpDelayMs: 0 } });
    manager.start();
    await waitFor(async () => {
      const backups = await manager.list(stale.projectId);
      return backups.length === 2 && backups[0]!.state !== "running";
    });
    expect(bed.runtime.dumps.map((t) => t.slug)).toEqual(["stale"]);
    expect(await manager.list(fresh.projectId)).toHaveLength(1);
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
